/**
 * One request rate per health system, shared by every worker process: a GCRA row per system in
 * PostgreSQL (table trb_system_rate, migration 0020). Each request takes the next free instant of
 * its system in one statement (`tat`, the theoretical arrival time, moves on by the interval) and
 * waits until then, so N processes together keep the system's rate, spaced evenly, with no burst.
 *
 * - The rate: the system's own limit when the directory knows it (trb_system.rate_limit_per_minute,
 *   kept to 90 % of it: a request may go out a little after its instant, and the system counts
 *   calendar minutes), else `ratePerSecond` (SYNC_SYSTEM_RATE).
 * - A 429 slows the system down for everyone: no request goes before its end (Retry-After when the
 *   system said it, else the top of the next minute, as eClinicalWorks counts), and the interval is
 *   doubled for 10 minutes after. The requests waiting meanwhile take their turns after that end, in
 *   order: they are not each retried on their own clock.
 *
 * The system key is the FHIR base as trb_system.url_normalized writes it (lower-cased, no trailing
 * "/"): a practice at eClinicalWorks is one base. Cost: one UPDATE per request (its wait comes back
 * from it), and a look-up of the system's limit once a minute per process; bench/ measures it.
 * See: https://en.wikipedia.org/wiki/Generic_cell_rate_algorithm
 */
import type pg from 'pg';
import * as statements from './sql/rate.ts';

export interface SystemLimiter {
  /** Wait until this system may take one more request. */
  take(systemKey: string): Promise<void>;
  /** The system answered 429: slow it down for every process (`retryAfterMs` when it said how long). */
  throttled(systemKey: string, retryAfterMs?: number): Promise<void>;
}

/** The key of a FHIR base: as trb_system.url_normalized writes it. */
export const systemKey = (fhirBase: string): string => fhirBase.trim().replace(/\/+$/, '').toLowerCase();

/** Of a system's stated limit, the share the sync uses. */
const HEADROOM = 0.9;
/** How long a system's limit is kept in memory before it is read again. */
const LIMIT_TTL_MS = 60_000;
/** After a 429, how long the system's interval stays doubled. */
const SLOW_MS = 10 * 60_000;
/** A Retry-After is heeded up to this long. */
const MAX_BLOCK_MS = 10 * 60_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function createSystemLimiter(pool: pg.Pool, o: { ratePerSecond: number }): SystemLimiter {
  if (!(o.ratePerSecond > 0))
    throw new Error(`The sync's rate per system must be a positive number of requests a second; it was ${o.ratePerSecond}.`);
  const defaultInterval = 1000 / o.ratePerSecond;
  /** Per system key: its interval in ms, and when it was read. */
  const intervals = new Map<string, { ms: number; at: number }>();
  /** Per system key, in this process: the end of a 429 seen here, so that a request that took its turn before it waits it out too. */
  const blockedUntil = new Map<string, number>();

  const intervalOf = async (key: string): Promise<number> => {
    const known = intervals.get(key);
    if (known && Date.now() - known.at < LIMIT_TTL_MS) return known.ms;
    const { rows } = await pool.query<{ rate_limit_per_minute: number | null }>(statements.statedLimit(key));
    const perMinute = rows[0]?.rate_limit_per_minute;
    // The system's own limit, or the default when that is slower.
    const ms = perMinute ? Math.max(defaultInterval, 60_000 / (perMinute * HEADROOM)) : defaultInterval;
    intervals.set(key, { ms, at: Date.now() });
    return ms;
  };

  return {
    async take(key) {
      for (;;) {
        const { rows } = await pool.query<{ wait_ms: number }>(statements.takeTurn(key, await intervalOf(key)));
        const wait = rows[0].wait_ms;
        if (wait > 0) await sleep(wait);
        // A 429 seen here while this request waited for its turn: it takes a turn after the block.
        const blocked = blockedUntil.get(key);
        if (!blocked || blocked <= Date.now()) return;
      }
    },
    async throttled(key, retryAfterMs) {
      const until = retryAfterMs === undefined || !Number.isFinite(retryAfterMs) ? null : Math.min(Math.max(0, retryAfterMs), MAX_BLOCK_MS);
      const { rows } = await pool.query<{ blocked_ms: number }>(statements.throttle(key, until, SLOW_MS));
      blockedUntil.set(key, Date.now() + rows[0].blocked_ms);
    },
  };
}
