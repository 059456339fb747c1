/**
 * Each system's status, from its own endpoints: `{base}/.well-known/smart-configuration` and
 * `{base}/metadata` (the CapabilityStatement's oauth-uris extension counts as SMART too).
 * - connection_working: the FHIR server answers and says where to authorize;
 * - no_smart: it answers, but names no authorization endpoint;
 * - unreachable: no FHIR answer (network error, timeout, an error status), after retries with
 *   exponential backoff and jitter.
 * Systems are probed with bounded concurrency; each result is stored with the time it was checked.
 * A base on an address Tributary may not reach (src/net/outbound.ts) is unreachable.
 */
import type pg from 'pg';
import { fetchJson, oauthUris } from '../fhir-http-client.ts';
import { createOutbound, type OutboundFetch } from '../net/outbound.ts';
import * as sql from './sql.ts';

export type SystemStatus = 'connection_working' | 'no_smart' | 'unreachable';

export interface ProbeOptions {
  /** Systems probed at once. */
  concurrency: number;
  timeoutMs: number;
  /** Tries per URL on a network error, a timeout, 429 or 5xx. */
  attempts: number;
  /** The first retry waits about this long, each next one twice as long (with jitter). */
  backoffMs: number;
  /**
   * The outbound fetch (the app's, with the operator's allow-list); without one, a run makes a
   * guarded one of its own that allows nothing private.
   */
  fetch?: OutboundFetch;
}

export const DEFAULT_PROBE: ProbeOptions = { concurrency: 16, timeoutMs: 10_000, attempts: 3, backoffMs: 1000 };

/** A JSON body of `url`, or undefined when it has none (after the retries a transient failure earns). */
const getJson = (fetch: OutboundFetch, url: string, o: ProbeOptions) => fetchJson(fetch, url, o).catch(() => undefined);

export async function probeSystem(fetch: OutboundFetch, baseUrl: string, o: ProbeOptions = DEFAULT_PROBE): Promise<SystemStatus> {
  const base = baseUrl.replace(/\/+$/, '');
  const [smart, metadata] = await Promise.all([getJson(fetch, `${base}/.well-known/smart-configuration`, o), getJson(fetch, `${base}/metadata`, o)]);
  const cs = metadata as { resourceType?: string } | undefined;
  if (cs?.resourceType !== 'CapabilityStatement' && !smart) return 'unreachable';
  const smartOk = typeof (smart as { authorization_endpoint?: unknown } | undefined)?.authorization_endpoint === 'string';
  return smartOk || oauthUris(cs) !== undefined ? 'connection_working' : 'no_smart';
}

/** Probes systems (all, or those given) and stores each status; answers the count per status. */
export async function probeSystems(pool: pg.Pool, o: ProbeOptions = DEFAULT_PROBE, ids?: string[]): Promise<Record<SystemStatus, number>> {
  const { rows } = await pool.query<{ id: string; resource_url: string }>(sql.systemsToProbe(ids ?? null));
  const counts: Record<SystemStatus, number> = { connection_working: 0, no_smart: 0, unreachable: 0 };
  let next = 0;
  const own = o.fetch ? undefined : createOutbound({ allow: [] });
  const fetch = o.fetch ?? own!.fetch;
  try {
    await Promise.all(
      Array.from({ length: Math.min(o.concurrency, rows.length) }, async () => {
        while (next < rows.length) {
          const s = rows[next++];
          const status = await probeSystem(fetch, s.resource_url, o);
          counts[status]++;
          // A status that changed puts the system's Endpoint (its status) back in the FHIR view's queue.
          await pool.query(sql.recordStatus(s.id, status));
        }
      }),
    );
  } finally {
    await own?.close();
  }
  return counts;
}
