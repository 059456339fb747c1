/** Fixed SQL statements of the per-system rate (trb_system_rate, a GCRA row per system: src/sync/rate-limit.ts). */
import type { Sql } from '../../storage/sql.ts';

/**
 * The instant the next request may go, taken: the row's tat (or now, or the block's end, whichever
 * is latest); the row moves on by the interval (doubled while slowed). Returns the wait in ms.
 */
export function takeTurn(key: string, intervalMs: number): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_system_rate AS r (system_key, tat) VALUES ($1, clock_timestamp() + make_interval(secs => $2 / 1000.0))
    ON CONFLICT (system_key) DO UPDATE SET tat = greatest(r.tat, clock_timestamp(), r.blocked_until)
      + make_interval(secs => $2 / 1000.0 * CASE WHEN r.slow_until > clock_timestamp() THEN 2 ELSE 1 END)
    RETURNING greatest(0, extract(epoch FROM r.tat - clock_timestamp()) * 1000
      - $2 * CASE WHEN r.slow_until > clock_timestamp() THEN 2 ELSE 1 END)::float8 AS wait_ms`,
    values: [key, intervalMs],
  };
}

/** A 429: blocked until `until` (ms from now; null: the top of the next minute), slowed for `slowMs`. */
export function throttle(key: string, untilMs: number | null, slowMs: number): Sql {
  return {
    text: /* SQL */ `WITH b AS (SELECT coalesce(clock_timestamp() + make_interval(secs => $2 / 1000.0), date_trunc('minute', clock_timestamp()) + interval '1 minute') AS until)
    INSERT INTO trb_system_rate AS r (system_key, tat, blocked_until, slow_until)
      SELECT $1, b.until, b.until, b.until + make_interval(secs => $3 / 1000.0) FROM b
    ON CONFLICT (system_key) DO UPDATE SET blocked_until = greatest(r.blocked_until, EXCLUDED.blocked_until),
      tat = greatest(r.tat, EXCLUDED.blocked_until), slow_until = greatest(r.slow_until, EXCLUDED.slow_until)
    RETURNING extract(epoch FROM r.blocked_until - clock_timestamp())::float8 * 1000 AS blocked_ms`,
    values: [key, untilMs, slowMs],
  };
}

/** The system's stated limit (trb_system.rate_limit_per_minute), by its key. */
export function statedLimit(key: string): Sql {
  return { text: /* SQL */ 'SELECT rate_limit_per_minute FROM trb_system WHERE url_normalized = $1', values: [key] };
}
