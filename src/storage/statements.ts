/**
 * The resource store's fixed statements besides its reads and bulk inserts (src/storage/sql.ts):
 * id blocks, tag definitions, resource updates and links in bulk, migrations and the probe of the
 * database, as small functions returning { text, values }.
 */
import type { Sql } from './sql.ts';
import { ownerKey, ownRecordsKeySql } from './distribution.ts';

/** Whether the database answers (GET /readyz). */
export function ping(): Sql {
  return { text: 'SELECT 1', values: [] };
}

/** `blocks` values of a sequence, one block of ids each. `sequence`: a name its caller validated. */
export function nextValues(sequence: string, blocks: number): Sql {
  return { text: `SELECT nextval('${sequence}') AS v FROM generate_series(1, $1)`, values: [blocks] };
}

/** Tag definitions, new ones only (a concurrent insert of the same tag meets this one on the unique index). */
export function insertTagDefinitions(
  ids: string[],
  type: number[],
  system: (string | null)[],
  code: (string | null)[],
  display: (string | null)[],
  version: (string | null)[],
  userSelected: (boolean | null)[],
): Sql {
  return {
    text: /* SQL */ `INSERT INTO hfj_tag_def (tag_id, tag_type, tag_system, tag_code, tag_display, tag_version, tag_user_selected)
      SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[])
      ON CONFLICT (tag_type, coalesce(tag_system, ''), coalesce(tag_code, ''), coalesce(tag_version, ''), coalesce(tag_display, '')) DO NOTHING`,
    values: [ids, type, system, code, display, version, userSelected],
  };
}

/** The stored definitions (and ids) of tags given by their columns. */
export function tagIdsOf(
  type: number[],
  system: (string | null)[],
  code: (string | null)[],
  display: (string | null)[],
  version: (string | null)[],
): Sql {
  return {
    text: /* SQL */ `SELECT d.tag_id, d.tag_type, d.tag_system, d.tag_code, d.tag_display, d.tag_version
      FROM hfj_tag_def d JOIN unnest($1::smallint[], $2::text[], $3::text[], $4::text[], $5::text[]) AS k(ty, sy, co, di, ve)
        ON d.tag_type = k.ty AND coalesce(d.tag_system, '') = coalesce(k.sy, '') AND coalesce(d.tag_code, '') = coalesce(k.co, '')
       AND coalesce(d.tag_display, '') = coalesce(k.di, '') AND coalesce(d.tag_version, '') = coalesce(k.ve, '')`,
    values: [type, system, code, display, version],
  };
}

/**
 * UPDATE hfj_resource from column arrays of equal length (res_id first), setting `sets` (columns
 * among `columns`) of each row by its res_id.
 */
export function updateResources(columns: [name: string, pgType: string][], sets: string[], arrays: unknown[][]): Sql {
  const assignments = sets.map((c) => `${c} = u.${c}`).join(', ');
  const params = columns.map(([, t], i) => `$${i + 1}::${t}[]`).join(', ');
  // The owners once more, as one constant list: on Citus, their shards only.
  const owners = [...new Set(arrays[columns.findIndex(([c]) => c === 'owner_id')] as string[])];
  return {
    text: `UPDATE hfj_resource r SET ${assignments} FROM unnest(${params}) AS u(${columns.map((c) => c[0]).join(', ')}) WHERE r.res_id = u.res_id AND r.owner_id = u.owner_id AND r.owner_id = ANY($${columns.length + 1}::bigint[])`,
    values: [...arrays, owners],
  };
}

/**
 * hfj_res_link rows from column arrays of equal length. A null target_resource_id is looked up by
 * the statement itself (a target stored before this batch; its own inserts are not visible to it).
 */
export function insertLinks(columns: [name: string, pgType: string][], arrays: unknown[][]): Sql {
  const names = columns.map((c) => c[0]);
  // The owners the targets may have (a source's owner, or the partition's own records), as one
  // constant list: on Citus, the lookup reads those owners' shards only.
  const partitions = arrays[names.indexOf('partition_id')] as number[];
  const owners = new Set(arrays[names.indexOf('owner_id')] as string[]);
  for (const p of new Set(partitions)) owners.add(ownerKey(p, null));
  const n = columns.length + 1;
  const select = names.map((c) =>
    c === 'target_resource_id'
      ? `coalesce(u.target_resource_id, (SELECT t.res_id FROM hfj_resource t WHERE t.owner_id = ANY($${n}::bigint[]) AND t.partition_id = u.partition_id AND t.res_type = u.target_resource_type AND t.fhir_id = u.target_fhir_id AND t.owner_id IN (u.owner_id, ${ownRecordsKeySql('u.partition_id')}) LIMIT 1))`
      : `u.${c}`,
  );
  return {
    text: `INSERT INTO hfj_res_link (${names.join(', ')}) SELECT ${select.join(', ')} FROM unnest(${columns.map((c, i) => `$${i + 1}::${c[1]}[]`).join(', ')}) AS u(${names.join(', ')})`,
    values: [...arrays, [...owners]],
  };
}

/** Makes concurrent migrations take turns (until the end of the transaction). */
export function migrationLock(key: number): Sql {
  return { text: 'SELECT pg_advisory_xact_lock($1)', values: [key] };
}

export function createMigrationTable(): Sql {
  return {
    text: /* SQL */ `CREATE TABLE IF NOT EXISTS trb_migration (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    values: [],
  };
}

export function appliedMigrations(): Sql {
  return { text: 'SELECT version FROM trb_migration', values: [] };
}

export function recordMigration(version: number, name: string): Sql {
  return { text: 'INSERT INTO trb_migration (version, name) VALUES ($1, $2)', values: [version, name] };
}
