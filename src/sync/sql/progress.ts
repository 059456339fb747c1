/**
 * Fixed SQL statements of a connection's sync progress: per query (trb_sync_query: its checkpoint
 * and the `next` a cut-off pass goes on with) and per type (trb_sync_type: what the last run saw).
 */
import type { Sql } from '../../storage/sql.ts';

export function queryProgress(connectionId: string): Sql {
  return { text: /* SQL */ 'SELECT query_key, since, next FROM trb_sync_query WHERE connection_id = $1', values: [connectionId] };
}

export function typeProgress(connectionId: string): Sql {
  return { text: /* SQL */ 'SELECT res_type, status, last_full_at FROM trb_sync_type WHERE connection_id = $1', values: [connectionId] };
}

/** A page of a query stored: the link its pass goes on with (null: the pass reached its last page). */
export function savePageProgress(connectionId: string, key: string, next: string | null, runStartedAt: Date): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_sync_query (connection_id, query_key, next, pass_started_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (connection_id, query_key) DO UPDATE SET next = EXCLUDED.next, pass_started_at = coalesce(trb_sync_query.pass_started_at, EXCLUDED.pass_started_at), updated_at = now()`,
    values: [connectionId, key, next, runStartedAt],
  };
}

/** A query completed: its checkpoint, the earlier of `startedAt` and its pass's start, less `marginSeconds`. */
export function saveQueryDone(connectionId: string, key: string, startedAt: Date, marginSeconds: number): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_sync_query (connection_id, query_key, since) VALUES ($1, $2, $3::timestamptz - make_interval(secs => $4))
     ON CONFLICT (connection_id, query_key) DO UPDATE SET
       since = least(coalesce(trb_sync_query.pass_started_at, $3::timestamptz), $3::timestamptz) - make_interval(secs => $4),
       next = NULL, pass_started_at = NULL, updated_at = now()`,
    values: [connectionId, key, startedAt, marginSeconds],
  };
}

/** A pass the next run starts over. */
export function dropNext(connectionId: string, key: string): Sql {
  return {
    text: /* SQL */ 'UPDATE trb_sync_query SET next = NULL, pass_started_at = NULL, updated_at = now() WHERE connection_id = $1 AND query_key = $2',
    values: [connectionId, key],
  };
}

/**
 * What the run saw of a type. `keepVariants`: the refused variants recorded before stand (the
 * run met none of them again).
 */
export function saveTypeState(
  connectionId: string,
  type: string,
  status: string,
  fetched: number,
  refusal: string | null,
  refusedVariants: string,
  error: string | null,
  fullAt: Date | null,
  runId: string,
  keepVariants: boolean,
): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_sync_type (connection_id, res_type, status, fetched, refusal, refused_variants, error, last_full_at, last_run_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (connection_id, res_type) DO UPDATE SET status = EXCLUDED.status, fetched = EXCLUDED.fetched, refusal = EXCLUDED.refusal,
       refused_variants = CASE WHEN $10 THEN trb_sync_type.refused_variants ELSE EXCLUDED.refused_variants END, error = EXCLUDED.error, last_full_at = coalesce(EXCLUDED.last_full_at, trb_sync_type.last_full_at),
       last_run_id = EXCLUDED.last_run_id, updated_at = now()`,
    values: [connectionId, type, status, fetched, refusal, refusedVariants, error, fullAt, runId, keepVariants],
  };
}
