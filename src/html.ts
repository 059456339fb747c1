/** Text made safe inside HTML (element content and quoted attributes): the pages the server renders itself. */
export const escapeHtml = (s: unknown): string => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
