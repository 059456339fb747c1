/**
 * Reading a health system's public documents (its SMART configuration, its CapabilityStatement):
 * a GET of JSON retried when the server is busy or unreachable (network errors, timeouts, 429,
 * 5xx) with exponential backoff and jitter, or after its Retry-After when `maxRetryAfterS` says to
 * heed one. Used by the directory's status probe and by the connect flow's discovery, each with
 * the app's outbound fetch (src/net/outbound.ts).
 */
import { isRefusal, type OutboundFetch } from './net/outbound.ts';

export interface JsonRetry {
  attempts: number;
  /** The first retry waits about this long, each next one twice as long (with jitter). */
  backoffMs: number;
  timeoutMs: number;
  /** Heed a Retry-After up to this many seconds; undefined: back off as usual. */
  maxRetryAfterS?: number;
}

/** The JSON body of `url`; throws (the last error, or `HTTP <status>`) when none came. */
export async function fetchJson(fetch: OutboundFetch, url: string, o: JsonRetry): Promise<unknown> {
  for (let attempt = 1; ; attempt++) {
    let res: Response | undefined;
    try {
      res = await fetch(url, { headers: { accept: 'application/fhir+json, application/json' }, signal: AbortSignal.timeout(o.timeoutMs) });
    } catch (err) {
      // An address the agent refuses (or a URL it cannot fetch) is refused again: no retry.
      const refused = isRefusal(err);
      if (refused || attempt >= o.attempts) throw err;
    }
    if (res?.ok) return res.json();
    if (res) {
      await res.body?.cancel();
      if ((res.status !== 429 && res.status < 500) || attempt >= o.attempts) throw new Error(`HTTP ${res.status}`);
    }
    const retryAfter = o.maxRetryAfterS === undefined ? Number.NaN : Number(res?.headers.get('retry-after') ?? Number.NaN);
    const wait = Number.isFinite(retryAfter)
      ? Math.min(retryAfter, o.maxRetryAfterS!) * 1000
      : o.backoffMs * 2 ** (attempt - 1) * (0.5 + Math.random());
    await new Promise((r) => setTimeout(r, wait));
  }
}

const OAUTH_URIS = 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris';

type CapabilityStatementLike = { rest?: { security?: { extension?: { url?: string; extension?: { url?: string; valueUri?: string }[] }[] } }[] };

/**
 * SMART's oauth-uris extension of a CapabilityStatement, as name → URI (`authorize`, `token`,
 * `revoke`...); undefined when the statement has no such extension (an empty map when it has one
 * that names nothing).
 */
export function oauthUris(cs: unknown): Map<string, string> | undefined {
  const ext = (cs as CapabilityStatementLike | undefined)?.rest?.flatMap((r) => r.security?.extension ?? []).find((e) => e.url === OAUTH_URIS);
  return ext && new Map((ext.extension ?? []).filter((e) => e.url && e.valueUri).map((e) => [e.url!, e.valueUri!]));
}
