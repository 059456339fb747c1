/**
 * The two statements an export reads one type with, in its snapshot, as of its transactionTime T:
 * - the current versions last updated at or before T (nearly everything);
 * - for the resources changed after T (while the export waited or ran), the version each had at T
 *   from its history, so that an update or a delete committed meanwhile neither leaks in nor takes
 *   out what was there at T. Their `_typeFilter` (and v2 scope filters) are judged on their current
 *   index rows (past versions are not indexed); one deleted since is taken only without filters.
 */
import type { Sql } from '../storage/sql.ts';
import { READ_COLUMNS } from '../storage/sql.ts';

/** Whose records of the app an export reads, beyond its request's scope. */
export type Owners = { kind: 'any' } | { kind: 'users'; ids: string[] } | { kind: 'all' };

export interface TypeQuery {
  partitionId: number;
  /** The request scope's user (a user's token), or null (the app's credentials). */
  userId: string | null;
  type: string;
  /** engine.exportSource's `hfj_resource r WHERE ...` and its values. */
  source: { from: string; values: unknown[] };
  /** Whether filters (_typeFilter, v2 scope filters) narrow the type. */
  filtered: boolean;
  owners: Owners;
  at: Date;
  since: Date | null;
}

/** The condition on `r.owner_id` for `owners`, its values appended to `values`. */
function ownerCondition(owners: Owners, values: unknown[]): string {
  if (owners.kind === 'all') return 'true';
  // Users' records (the app's own have a negative key: src/storage/distribution.ts).
  if (owners.kind === 'any') return 'r.owner_id > 0';
  values.push(owners.ids);
  return `r.owner_id = ANY($${values.length}::bigint[])`;
}

/** The current versions of the type at or before T (after `since`). */
export function currentVersions(q: TypeQuery): Sql {
  const values = [...q.source.values, q.at];
  const at = `$${values.length}`;
  const owner = ownerCondition(q.owners, values);
  let since = '';
  if (q.since) {
    values.push(q.since);
    since = ` AND r.res_updated > $${values.length}`;
  }
  return {
    text: /* SQL */ `SELECT ${READ_COLUMNS}
      FROM (SELECT r.res_id, r.res_type, r.fhir_id, r.res_ver, r.owner_id FROM ${q.source.from} AND r.res_updated <= ${at} AND ${owner}${since}) r
      JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver`,
    values,
  };
}

/** The version at T of the type's resources changed after T (live at T, after `since`). */
export function versionsAtT(q: TypeQuery): Sql {
  const values: unknown[] = [...q.source.values, q.partitionId, q.type, q.at];
  const [p, t, at] = [values.length - 2, values.length - 1, values.length].map((n) => `$${n}`);
  const owner = ownerCondition(q.owners, values);
  let user = '';
  if (q.userId !== null) {
    values.push(q.userId);
    user = ` AND r.owner_id = $${values.length}`;
  }
  let since = '';
  if (q.since) {
    values.push(q.since);
    since = ` AND v.res_updated > $${values.length}`;
  }
  const matches = `r.res_id IN (SELECT r.res_id FROM ${q.source.from})`;
  const kept = q.filtered ? matches : `(r.res_deleted_at IS NOT NULL OR ${matches})`;
  return {
    text: /* SQL */ `SELECT ${READ_COLUMNS}
      FROM (SELECT DISTINCT res_id, owner_id FROM hfj_res_ver WHERE partition_id = ${p} AND res_type = ${t} AND res_updated > ${at}) changed
      JOIN hfj_resource r ON r.res_id = changed.res_id AND r.owner_id = changed.owner_id
      CROSS JOIN LATERAL (SELECT * FROM hfj_res_ver v WHERE v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_updated <= ${at} ORDER BY v.res_ver DESC LIMIT 1) v
      WHERE v.res_text_vc IS NOT NULL AND r.partition_id = ${p} AND ${owner}${user}${since} AND ${kept}`,
    values,
  };
}
