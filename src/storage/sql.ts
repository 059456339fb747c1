/**
 * Fixed SQL statements of the resource store, as small functions returning { text, values }.
 * Bulk writes pass one array per column and unnest them: one statement per table per batch.
 */
import { createHash } from 'node:crypto';
import type { Scope } from '../fhir/ports.ts';
import { INDEX_TABLES, ownerKey, ownRecordsKeySql } from './distribution.ts';

export interface Sql {
  text: string;
  values: unknown[];
  /** A prepared-statement name: PostgreSQL plans the statement once per connection. */
  name?: string;
}

/** A prepared-statement name derived from a statement's text: the same text, the same name. */
export function statementName(text: string): string {
  return `trb_${createHash('sha1').update(text).digest('hex').slice(0, 16)}`;
}

/**
 * Gives a fixed statement its prepared-statement name. Derived from the text each time (a SHA-1 of
 * a few hundred bytes, a microsecond or two) rather than remembered in a map shared by the process.
 */
export function prepared(sql: Sql): Sql {
  return { ...sql, name: statementName(sql.text) };
}

/** A value for LIKE with its wildcards (`%`, `_`) and the escape character taken literally. */
export function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (ch) => `\\${ch}`);
}

/**
 * `alias` belongs to the scope's user, when the scope names one (`$n`: the owner id or null); with
 * `withUnowned`, the app's own resources (no owner) too, which a read of a sandbox system needs.
 */
export function ownedBy(alias: string, n: number, scope?: Scope): string {
  return scope?.withUnowned
    ? `(${alias}.owner_id = $${n} OR $${n}::bigint IS NULL OR ${alias}.owner_id = ${ownRecordsKeySql(`${alias}.partition_id`)})`
    : `(${alias}.owner_id = $${n} OR $${n}::bigint IS NULL)`;
}

/**
 * The columns a read needs to rebuild a version, over `hfj_resource r` and `hfj_res_ver v`: its
 * tags as hfj_tag_def ids in the order they were written (the repository knows the definitions).
 */
export const READ_COLUMNS = /* SQL */ `
  r.res_id, r.res_type, r.fhir_id, v.res_ver, v.res_updated, v.res_deleted_at, v.res_text_vc, v.source_uri,
  CASE WHEN v.has_tags THEN ARRAY(SELECT ht.tag_id FROM hfj_history_tag ht WHERE ht.res_ver_pid = v.pid AND ht.owner_id = v.owner_id ORDER BY ht.pid) END AS tag_ids`;

/** Tag definitions by id (immutable once written: a version names them by id). */
export function tagDefinitions(ids: string[]): Sql {
  return prepared({
    text: /* SQL */ `SELECT tag_id, tag_type, tag_system, tag_code, tag_display, tag_version, tag_user_selected FROM hfj_tag_def WHERE tag_id = ANY($1::bigint[])`,
    values: [ids],
  });
}

export function readCurrent(scope: Scope, type: string, id: string): Sql {
  return prepared({
    text: /* SQL */ `SELECT ${READ_COLUMNS}
      FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver
      WHERE r.partition_id = $1 AND r.res_type = $2 AND r.fhir_id = $3 AND ${ownedBy('r', 4, scope)}`,
    values: [scope.partitionId, type, id, scope.ownerId],
  });
}

/**
 * The current versions of many resources in one statement: a lateral probe of the unique index
 * per key (whatever the statistics, never a scan).
 */
export function readCurrentMany(scope: Scope, types: string[], ids: string[]): Sql {
  return prepared({
    text: /* SQL */ `SELECT x.* FROM unnest($2::text[], $3::text[]) AS k(t, i)
      CROSS JOIN LATERAL (
        SELECT ${READ_COLUMNS}
        FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver
        WHERE r.partition_id = $1 AND r.res_type = k.t AND r.fhir_id = k.i AND ${ownedBy('r', 4, scope)}
      ) x`,
    values: [scope.partitionId, types, ids, scope.ownerId],
  });
}

/** Current versions by res_id, in the order given, live ones of the partition only (search pages). */
export function readByResIds(scope: Scope, resIds: string[]): Sql {
  return prepared({
    text: /* SQL */ `SELECT ${READ_COLUMNS}
      FROM unnest($2::bigint[]) WITH ORDINALITY AS k(id, ord)
      JOIN hfj_resource r ON r.res_id = k.id
      JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver
      WHERE r.partition_id = $1 AND r.res_deleted_at IS NULL AND ${ownedBy('r', 3, scope)}
      ORDER BY k.ord`,
    values: [scope.partitionId, resIds, scope.ownerId],
  });
}

export function readVersion(scope: Scope, type: string, id: string, version: number): Sql {
  return prepared({
    text: /* SQL */ `SELECT ${READ_COLUMNS}
      FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = $4
      WHERE r.partition_id = $1 AND r.res_type = $2 AND r.fhir_id = $3 AND ${ownedBy('r', 5, scope)}`,
    values: [scope.partitionId, type, id, version, scope.ownerId],
  });
}

/**
 * Current rows of many resources, locked for the rest of the transaction. A lateral lookup per
 * key keeps it on the unique index whatever the statistics say (a join could scan the table).
 */
export function lockCurrent(scope: Scope, types: string[], ids: string[]): Sql {
  return prepared({
    text: /* SQL */ `SELECT r.res_id, r.res_type, r.fhir_id, r.res_ver, r.res_deleted_at, r.hash_sha256, r.res_published, r.res_updated, r.owner_id
      FROM unnest($2::text[], $3::text[]) AS k(t, i)
      CROSS JOIN LATERAL (
        SELECT * FROM hfj_resource x WHERE x.partition_id = $1 AND x.res_type = k.t AND x.fhir_id = k.i AND ${ownedBy('x', 4)} FOR UPDATE
      ) r`,
    values: [scope.partitionId, types, ids, scope.ownerId],
  });
}

/**
 * Locks these ids of new resources (chosen by the client) for the transaction, so that two creates
 * of one id by two owners take turns and the second sees the first (idsHeldByOthers).
 */
export function lockNewIds(partitionId: number, types: string[], ids: string[]): Sql {
  return prepared({
    text: /* SQL */ `SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || k.t || '/' || k.i, 0)) FROM unnest($2::text[], $3::text[]) AS k(t, i)`,
    values: [partitionId, types, ids],
  });
}

/**
 * Of these ids, those another owner of the partition holds: an id is unique within an owner's
 * records by index (a unique index cannot span the shards), and within the app by this check.
 */
export function idsHeldByOthers(scope: Scope, types: string[], ids: string[]): Sql {
  return prepared({
    text: /* SQL */ `/* every shard: an id is the app's, whoever holds it */ SELECT k.t AS res_type, k.i AS fhir_id FROM unnest($2::text[], $3::text[]) AS k(t, i)
      WHERE EXISTS (SELECT 1 FROM hfj_resource r WHERE r.partition_id = $1 AND r.res_type = k.t AND r.fhir_id = k.i AND r.owner_id <> $4)`,
    values: [scope.partitionId, types, ids, ownerKey(scope.partitionId, scope.ownerId)],
  });
}

export interface HistoryQuery {
  scope: Scope;
  type?: string;
  id?: string;
  since?: Date;
  at?: Date;
  count: number;
  offset: number;
}

/** Versions newest first. `_at`: the version current at that instant, per resource. */
export function history(q: HistoryQuery, withTotal: boolean): Sql {
  const values: unknown[] = [q.scope.partitionId, q.scope.ownerId];
  const where = ['v.partition_id = $1', ownedBy('r', 2, q.scope)];
  if (q.type) {
    values.push(q.type);
    where.push(`v.res_type = $${values.length}`);
  }
  if (q.id) {
    values.push(q.id);
    where.push(`r.fhir_id = $${values.length}`);
  }
  if (q.since) {
    values.push(q.since);
    where.push(`v.res_updated >= $${values.length}`);
  }
  if (q.at) {
    values.push(q.at);
    const at = `$${values.length}`;
    where.push(
      `v.res_updated <= ${at} AND NOT EXISTS (SELECT 1 FROM hfj_res_ver n WHERE n.res_id = v.res_id AND n.owner_id = v.owner_id AND n.res_ver > v.res_ver AND n.res_updated <= ${at})`,
    );
  }
  const from = /* SQL */ `FROM hfj_res_ver v JOIN hfj_resource r ON r.res_id = v.res_id AND r.owner_id = v.owner_id WHERE ${where.join(' AND ')}`;
  if (withTotal) return { text: `SELECT count(*)::int AS total ${from}`, values };
  values.push(q.count, q.offset);
  return {
    text: /* SQL */ `SELECT ${READ_COLUMNS} ${from} ORDER BY v.res_updated DESC, v.pid DESC LIMIT $${values.length - 1} OFFSET $${values.length}`,
    values,
  };
}

/**
 * Removes the index rows and links of resources, and their current tags unless `keepTags` (a
 * reindex recomputes what search parameters derive; tags are not derived from them).
 */
export function deleteIndexes(resIds: string[], ownerKeys: string[], keepTags = false): Sql {
  const tables = [
    ...INDEX_TABLES.map((t) => [t, 'res_id']),
    ['hfj_res_link', 'src_resource_id'],
    ['hfj_res_param_present', 'res_id'],
    ...(keepTags ? [] : [['hfj_res_tag', 'res_id']]),
  ];
  // The owners too: on Citus, the shards of those owners only.
  const ctes = tables.map(([t, col], i) => `d${i} AS (DELETE FROM ${t} WHERE ${col} = ANY($1::bigint[]) AND owner_id = ANY($2::bigint[]))`);
  return prepared({ text: `WITH ${ctes.join(', ')} SELECT 1`, values: [resIds, [...new Set(ownerKeys)]] });
}

/**
 * Several INSERT / UPDATE statements as one (data-modifying CTEs), so a whole batch is written
 * in one round trip; each part's $n are renumbered into one parameter list.
 */
export function combine(parts: Sql[]): Sql {
  if (parts.length === 1) return prepared(parts[0]);
  const values: unknown[] = [];
  const ctes = parts.map((p, i) => {
    const offset = values.length;
    values.push(...p.values);
    return `w${i} AS (${p.text.replace(/\$(\d+)/g, (_m, n) => `$${Number(n) + offset}`)})`;
  });
  return prepared({ text: `WITH ${ctes.join(', ')} SELECT 1`, values });
}

/** INSERT ... SELECT FROM unnest(...) for column arrays of equal length. */
export function bulkInsert(table: string, columns: [name: string, pgType: string][], arrays: unknown[][]): Sql {
  const cols = columns.map((c) => c[0]).join(', ');
  const params = columns.map((c, i) => `$${i + 1}::${c[1]}[]`).join(', ');
  return { text: `INSERT INTO ${table} (${cols}) SELECT * FROM unnest(${params})`, values: arrays };
}
