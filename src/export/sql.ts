/** Fixed SQL statements of Bulk Data exports (trb_export, trb_export_file, trb_export_part). */
import type { Sql } from '../storage/sql.ts';

/** The columns an export's row is read with. */
const EXPORT_COLUMNS = /* SQL */ `id, app_id, user_id, request, params, status, transaction_time, progress, exported, error,
  created_at, completed_at, expires_at`;

/** A new export, its transactionTime the database's clock now. */
export function insertExport(id: string, appId: number, userId: string | null, request: string, params: unknown, ttlSeconds: number): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_export (id, app_id, user_id, request, params, status, transaction_time, expires_at)
      VALUES ($1, $2, $3, $4, $5, 'accepted', clock_timestamp(), clock_timestamp() + make_interval(secs => $6))
      RETURNING transaction_time`,
    values: [id, appId, userId, request, JSON.stringify(params), ttlSeconds],
  };
}

/** Exports of an app not yet done (accepted or in progress). */
export function exportsRunning(appId: number): Sql {
  return {
    text: `SELECT count(*)::int AS n FROM trb_export WHERE app_id = $1 AND status IN ('accepted', 'in-progress') AND expires_at > now()`,
    values: [appId],
  };
}

export function exportById(id: string): Sql {
  return { text: `SELECT ${EXPORT_COLUMNS} FROM trb_export WHERE id = $1`, values: [id] };
}

/** The files of export $1 (rows and bytes) dropped, before an UPDATE of its row. */
const DROP_FILES = /* SQL */ `WITH f AS (DELETE FROM trb_export_file WHERE export_id = $1), p AS (DELETE FROM trb_export_part WHERE export_id = $1)`;

/** A (re)started export: in progress, without what an earlier attempt wrote. */
export function restartExport(id: string): Sql {
  return {
    text: /* SQL */ `${DROP_FILES}
      UPDATE trb_export SET status = 'in-progress', progress = 'starting', exported = 0, error = NULL WHERE id = $1 AND status <> 'completed'`,
    values: [id],
  };
}

export function setProgress(id: string, progress: string, exported: number): Sql {
  return { text: `UPDATE trb_export SET progress = $2, exported = $3 WHERE id = $1`, values: [id, progress, exported] };
}

/** A file's row, made only while the export is still there (as its parts). */
export function insertFile(id: string, fileNo: number, kind: 'output' | 'error', type: string, count: number, bytes: number): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_export_file (export_id, file_no, kind, res_type, count, bytes)
      SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM trb_export WHERE id = $1 AND status = 'in-progress')`,
    values: [id, fileNo, kind, type, count, bytes],
  };
}

export function completeExport(id: string, exported: number, ttlSeconds: number): Sql {
  return {
    text: /* SQL */ `UPDATE trb_export SET status = 'completed', progress = NULL, exported = $2, completed_at = now(),
      expires_at = now() + make_interval(secs => $3) WHERE id = $1 AND status = 'in-progress'`,
    values: [id, exported, ttlSeconds],
  };
}

/** A failed export: its reason kept, its files dropped. */
export function failExport(id: string, error: string): Sql {
  return {
    text: /* SQL */ `${DROP_FILES}
      UPDATE trb_export SET status = 'failed', progress = NULL, error = $2, completed_at = now() WHERE id = $1`,
    values: [id, error],
  };
}

export function filesOf(id: string): Sql {
  return { text: `SELECT file_no, kind, res_type, count FROM trb_export_file WHERE export_id = $1 ORDER BY file_no`, values: [id] };
}

export function fileOf(id: string, fileNo: number): Sql {
  return { text: `SELECT kind, res_type, count, bytes FROM trb_export_file WHERE export_id = $1 AND file_no = $2`, values: [id, fileNo] };
}

/** Removes an export and its files (DELETE on its status URL, or its expiry). */
export function deleteExport(id: string): Sql {
  return { text: `DELETE FROM trb_export WHERE id = $1`, values: [id] };
}

/** Removes the exports past their expiry; answers how many. */
export function deleteExpired(): Sql {
  return { text: `WITH d AS (DELETE FROM trb_export WHERE expires_at < now() RETURNING 1) SELECT count(*)::int AS n FROM d`, values: [] };
}

/**
 * How long until `limit` by the database's clock (ms, 0 once past), and how many other
 * transactions of this database began at or before it: the export waits for both, since what
 * those write may carry a lastUpdated up to its transactionTime. Exports' own read-only
 * transactions (application_name tributary-export) do not count.
 */
export function writesBefore(limit: Date): Sql {
  return {
    text: /* SQL */ `SELECT greatest(0, extract(epoch FROM $1::timestamptz - clock_timestamp()) * 1000)::int AS wait_ms,
      (SELECT count(*)::int FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
          AND xact_start IS NOT NULL AND xact_start <= $1 AND application_name <> 'tributary-export') AS open`,
    values: [limit],
  };
}

/**
 * The resource types the rows of `from` (a `hfj_resource r WHERE ...`) have, walking the
 * (partition_id, res_type, fhir_id) index one type at a time instead of reading every row.
 */
export function typesPresent(partitionId: number): Sql {
  return {
    text: /* SQL */ `WITH RECURSIVE t(res_type) AS (
        (SELECT res_type FROM hfj_resource WHERE partition_id = $1 ORDER BY res_type LIMIT 1)
        UNION ALL
        SELECT (SELECT res_type FROM hfj_resource WHERE partition_id = $1 AND res_type > t.res_type ORDER BY res_type LIMIT 1)
        FROM t WHERE t.res_type IS NOT NULL)
      SELECT res_type FROM t WHERE res_type IS NOT NULL`,
    values: [partitionId],
  };
}

/** The owners (users) of the app's Patients with these ids: a Group's members, or `patient`. */
export function ownersOfPatients(partitionId: number, ids: string[]): Sql {
  return {
    text: /* SQL */ `SELECT fhir_id, owner_id FROM hfj_resource
      WHERE partition_id = $1 AND res_type = 'Patient' AND fhir_id = ANY($2::text[]) AND res_deleted_at IS NULL`,
    values: [partitionId, ids],
  };
}

/** The stored JSON of one of the app's Groups (its members are read from it). */
export function groupText(partitionId: number, id: string): Sql {
  return {
    text: /* SQL */ `SELECT v.res_text_vc FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver
      WHERE r.partition_id = $1 AND r.res_type = 'Group' AND r.fhir_id = $2 AND r.res_deleted_at IS NULL`,
    values: [partitionId, id],
  };
}
