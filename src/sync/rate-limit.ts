/**
 * One request rate per health system, shared by every worker process (stub: filled in next).
 */
import type pg from 'pg';

export interface SystemLimiter {
  /** Wait until this system may take one more request. */
  take(systemKey: string): Promise<void>;
  /** The system answered 429: slow it down for every process (`retryAfterMs` when it said how long). */
  throttled(systemKey: string, retryAfterMs?: number): Promise<void>;
}

export function createSystemLimiter(_pool: pg.Pool, _o: { ratePerSecond: number }): SystemLimiter {
  return { take: async () => {}, throttled: async () => {} };
}
