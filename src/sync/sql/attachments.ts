/** Fixed SQL statements of note contents (trb_sync_attachment): their state, stored, failed. */
import type { Sql } from '../../storage/sql.ts';

export function attachmentState(connectionId: string, hashes: string[]): Sql {
  return {
    text: /* SQL */ `SELECT url_hash, status, binary_id, next_try_at <= now() AS due FROM trb_sync_attachment WHERE connection_id = $1 AND url_hash = ANY($2::text[])`,
    values: [connectionId, hashes],
  };
}

export function attachmentStored(connectionId: string, hash: string, binaryId: string, bytes: number): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_sync_attachment (connection_id, url_hash, status, binary_id, bytes, http_status, tries)
    VALUES ($1, $2, 'stored', $3, $4, 200, 1)
    ON CONFLICT (connection_id, url_hash) DO UPDATE SET status = 'stored', binary_id = $3, bytes = $4, http_status = 200,
      tries = trb_sync_attachment.tries + 1, next_try_at = NULL, error = NULL, updated_at = now()`,
    values: [connectionId, hash, binaryId, bytes],
  };
}

/** A failure (`failed`, tried again after its backoff) or a `too-large` (never again). */
export function attachmentFailed(
  connectionId: string,
  hash: string,
  status: 'failed' | 'too-large',
  httpStatus: number | null,
  error: string,
  backoff: { baseS: number; capS: number },
  bytes: number | null,
): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_sync_attachment (connection_id, url_hash, status, http_status, tries, next_try_at, error, bytes)
    VALUES ($1, $2, $3, $4, 1, CASE WHEN $3 = 'failed' THEN now() + make_interval(secs => $6) END, $5, $8)
    ON CONFLICT (connection_id, url_hash) DO UPDATE SET status = $3, http_status = $4, tries = trb_sync_attachment.tries + 1,
      next_try_at = CASE WHEN $3 = 'failed' THEN now() + make_interval(secs => least($7, $6 * power(2, trb_sync_attachment.tries))) END,
      error = $5, bytes = $8, binary_id = NULL, updated_at = now()`,
    values: [connectionId, hash, status, httpStatus, error, backoff.baseS, backoff.capS, bytes],
  };
}
