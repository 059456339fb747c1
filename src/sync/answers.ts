/** Reading a system's answers (src/sync/session.ts): Retry-After, a refusal's body and its reason, a body within a size. */
import { TooLarge } from './source-errors.ts';

/** A refusal's body is read up to this many bytes (an OperationOutcome is far smaller). */
const MAX_ERROR_BODY = 64 * 1024;
const MAX_ERROR_TEXT = 2000;

/** Retry-After in ms (seconds or an HTTP date), or undefined. */
export function retryAfterMs(res: Response): number | undefined {
  const v = res.headers.get('retry-after');
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

/** The body of a refused request: parsed JSON when it says JSON, else at most 2,000 characters of text. */
export async function errorBody(res: Response): Promise<{ body?: unknown; contentType?: string }> {
  const contentType = res.headers.get('content-type') ?? undefined;
  let text: string;
  try {
    text = (await readCapped(res, MAX_ERROR_BODY)).toString('utf8');
  } catch {
    return { contentType };
  }
  if (!text) return { contentType };
  if (/json/i.test(contentType ?? '') || /^\s*[{[]/.test(text)) {
    try {
      return { body: JSON.parse(text), contentType };
    } catch {
      // Not JSON after all: its text.
    }
  }
  return { body: text.slice(0, MAX_ERROR_TEXT), contentType };
}

/** The body's bytes, at most `max` of them (TooLarge past that, with the rest left unread). */
export async function readCapped(res: Response, max: number): Promise<Buffer> {
  const stated = Number(res.headers.get('content-length'));
  if (Number.isFinite(stated) && stated > max) {
    await res.body?.cancel().catch(() => {});
    throw new TooLarge(`${stated} bytes, past the limit of ${max}`, stated);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  if (!res.body) return Buffer.alloc(0);
  for await (const chunk of res.body) {
    n += chunk.byteLength;
    if (n > max) {
      await res.body.cancel().catch(() => {});
      throw new TooLarge(`more than ${max} bytes`);
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/** A short reason for the message: the OperationOutcome's first diagnostics or details text. */
export function reasonOf(body: unknown): string {
  const issue = (body as { resourceType?: string; issue?: { diagnostics?: string; details?: { text?: string } }[] } | undefined)?.issue?.[0];
  const said = issue?.diagnostics ?? issue?.details?.text;
  return typeof said === 'string' && said ? ` (${said.slice(0, 200)})` : '';
}
