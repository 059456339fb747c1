/**
 * Outbound HTTP: every request Tributary sends to a host it does not control (a health system's
 * discovery, token and FHIR endpoints, the sync, the status probe, webhooks, a directory import by
 * URL) goes through one `fetch` of this module's making.
 *
 * (Placeholder: the guarded agent comes next; today this is the platform's fetch.)
 */

/** A `fetch` with the platform's signature; every outbound caller takes one of these. */
export type OutboundFetch = typeof globalThis.fetch;

export interface OutboundPolicy {
  /** Hosts (`name`, `name:port`) and address ranges (CIDR) that may be reached even when private. */
  allow: readonly string[];
}

export interface Outbound {
  fetch: OutboundFetch;
  close(): Promise<void>;
}

export function createOutbound(_policy: OutboundPolicy): Outbound {
  return { fetch: globalThis.fetch, close: async () => {} };
}
