/**
 * Fixed SQL statements of the sync about runs (trb_sync_run): the run lock, a run's record from
 * start to end, and the operators' summary of the runs since an instant.
 */
import type { Sql } from '../../storage/sql.ts';
import type { RunSummary } from '../run-types.ts';

/** Takes the run lock (pg_try_advisory_lock(key1, key2)) if it is free: `ok`. */
export function tryRunLock(space: number, key: number): Sql {
  return { text: /* SQL */ 'SELECT pg_try_advisory_lock($1, $2) AS ok', values: [space, key] };
}

export function releaseRunLock(space: number, key: number): Sql {
  return { text: /* SQL */ 'SELECT pg_advisory_unlock($1, $2)', values: [space, key] };
}

/** A run that ended at once, its lock taken by another: its id. */
export function skippedRun(connectionId: string, error: string): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_sync_run (connection_id, status, finished_at, error) VALUES ($1, 'skipped', now(), $2) RETURNING id::text`,
    values: [connectionId, error],
  };
}

/** A new run (its id and start), a run still marked running marked failed with `cutError`. */
export function startRun(connectionId: string, cutError: string): Sql {
  return {
    text: /* SQL */ `WITH cut AS (UPDATE trb_sync_run SET status = 'failed', finished_at = now(), error = $2 WHERE connection_id = $1 AND status = 'running')
     INSERT INTO trb_sync_run (connection_id) VALUES ($1) RETURNING id::text, started_at`,
    values: [connectionId, cutError],
  };
}

/** The run's record and the connection's state, in one statement (`issues`: the JSON of its issues). */
export function finishRun(runId: string, s: RunSummary, issues: string): Sql {
  return {
    text: /* SQL */ `WITH run AS (UPDATE trb_sync_run SET finished_at = now(), status = $2, fetched = $3, created = $4, updated = $5, unchanged = $6, failed = $7, error = $8, issues = $9, strategy = $10, requests = $11, deleted = $12 WHERE id = $1 RETURNING connection_id)
     UPDATE trb_connection SET last_sync_at = now(), last_error = $8,
       last_success_at = CASE WHEN $2 = 'succeeded' THEN now() ELSE last_success_at END,
       status = CASE WHEN $2 = 'needs_reauth' THEN 'needs_reauth' ELSE status END
     WHERE id = (SELECT connection_id FROM run)`,
    values: [
      runId,
      s.status,
      s.fetched,
      s.created,
      s.updated,
      s.unchanged,
      s.failed,
      s.error ?? null,
      issues,
      s.strategy ?? null,
      s.requests,
      s.deleted,
    ],
  };
}

/** The runs started since `from` (the last hour when null), summed up. */
export function runsSince(from: Date | null): Sql {
  return {
    text: /* SQL */ `SELECT count(*) FILTER (WHERE status <> 'skipped')::int AS runs, count(*) FILTER (WHERE status = 'running')::int AS running, count(*) FILTER (WHERE status = 'succeeded')::int AS succeeded,
               count(*) FILTER (WHERE status = 'skipped')::int AS skipped, coalesce(sum(deleted), 0)::int AS deleted,
               count(*) FILTER (WHERE status = 'failed')::int AS failed, count(*) FILTER (WHERE status = 'needs_reauth')::int AS needs_reauth,
               min(started_at) AS first_started_at, max(finished_at) AS last_finished_at,
               coalesce(sum(fetched), 0)::int AS fetched, coalesce(sum(created), 0)::int AS created, coalesce(sum(updated), 0)::int AS updated,
               coalesce(sum(unchanged), 0)::int AS unchanged, coalesce(sum(requests), 0)::int AS requests,
               (SELECT count(*)::int FROM trb_connection WHERE status = 'active') AS active_connections
             FROM trb_sync_run WHERE started_at >= coalesce($1::timestamptz, now() - interval '1 hour')`,
    values: [from],
  };
}

/** The five commonest errors of the runs started since `from` (the last hour when null). */
export function commonErrorsSince(from: Date | null): Sql {
  return {
    text: /* SQL */ `SELECT error, count(*)::int AS runs FROM trb_sync_run WHERE started_at >= coalesce($1::timestamptz, now() - interval '1 hour') AND error IS NOT NULL AND status <> 'skipped'
             GROUP BY error ORDER BY count(*) DESC LIMIT 5`,
    values: [from],
  };
}
