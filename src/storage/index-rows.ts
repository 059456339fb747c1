/**
 * Bulk INSERTs of a batch's index rows: one statement per hfj_spidx_* table, hfj_res_link and
 * hfj_res_param_present, each built from column arrays.
 */
import type { ResourceIndexes } from '../indexing/types.ts';
import { bulkInsert, type Sql } from './sql.ts';
import { insertLinks } from './statements.ts';

export interface IndexedResource {
  resId: string;
  type: string;
  /** The resource's distribution key (src/storage/distribution.ts ownerKey), written into every row of it. */
  ownerKey: string;
  indexes: ResourceIndexes;
}

type Col<R> = [name: string, pgType: string, pick: (row: R) => unknown];

const s = (v: bigint | null) => (v === null ? null : v.toString());

function table<R extends { name?: string }>(
  name: string,
  partitionId: number,
  now: Date,
  rows: { res: IndexedResource; row: R }[],
  cols: Col<R>[],
): Sql | null {
  if (rows.length === 0) return null;
  const common: [string, string][] = [
    ['partition_id', 'int'],
    ['res_id', 'bigint'],
    ['res_type', 'text'],
    ['sp_name', 'text'],
    ['sp_updated', 'timestamptz'],
    ['owner_id', 'bigint'],
  ];
  const commonArrays = [
    rows.map(() => partitionId),
    rows.map((r) => r.res.resId),
    rows.map((r) => r.res.type),
    rows.map((r) => r.row.name),
    rows.map(() => now),
    rows.map((r) => r.res.ownerKey),
  ];
  return bulkInsert(
    name,
    [...common, ...cols.map(([n, t]) => [n, t] as [string, string])],
    [...commonArrays, ...cols.map(([, , pick]) => rows.map((r) => pick(r.row)))],
  );
}

function flatten<K extends keyof ResourceIndexes>(list: IndexedResource[], k: K): { res: IndexedResource; row: ResourceIndexes[K][number] }[] {
  const out: { res: IndexedResource; row: ResourceIndexes[K][number] }[] = [];
  for (const res of list) for (const row of res.indexes[k]) out.push({ res, row });
  return out;
}

export function indexInserts(partitionId: number, now: Date, list: IndexedResource[], targets: Map<string, string>): Sql[] {
  const out: (Sql | null)[] = [
    table('hfj_spidx_string', partitionId, now, flatten(list, 'strings'), [
      ['sp_missing', 'bool', (r) => r.missing],
      ['hash_identity', 'bigint', (r) => s(r.hashIdentity)],
      ['sp_value_exact', 'text', (r) => r.valueExact],
      ['sp_value_normalized', 'text', (r) => r.valueNormalized],
      ['hash_exact', 'bigint', (r) => s(r.hashExact)],
      ['hash_norm_prefix', 'bigint', (r) => s(r.hashNormPrefix)],
    ]),
    table('hfj_spidx_token', partitionId, now, flatten(list, 'tokens'), [
      ['sp_missing', 'bool', (r) => r.missing],
      ['hash_identity', 'bigint', (r) => s(r.hashIdentity)],
      ['sp_system', 'text', (r) => r.system],
      ['sp_value', 'text', (r) => r.value],
      ['hash_sys', 'bigint', (r) => s(r.hashSys)],
      ['hash_sys_and_value', 'bigint', (r) => s(r.hashSysAndValue)],
      ['hash_value', 'bigint', (r) => s(r.hashValue)],
    ]),
    table('hfj_spidx_date', partitionId, now, flatten(list, 'dates'), [
      ['sp_missing', 'bool', (r) => r.missing],
      ['hash_identity', 'bigint', (r) => s(r.hashIdentity)],
      ['sp_value_low', 'timestamptz', (r) => (r.low === null ? null : new Date(r.low))],
      ['sp_value_high', 'timestamptz', (r) => (r.high === null ? null : new Date(r.high))],
      ['sp_value_low_date_ordinal', 'int', (r) => r.lowOrdinal],
      ['sp_value_high_date_ordinal', 'int', (r) => r.highOrdinal],
    ]),
    table('hfj_spidx_number', partitionId, now, flatten(list, 'numbers'), [
      ['sp_missing', 'bool', (r) => r.missing],
      ['hash_identity', 'bigint', (r) => s(r.hashIdentity)],
      ['sp_value', 'numeric', (r) => r.value],
    ]),
    ...(['quantities', 'quantitiesNormalized'] as const).map((k) =>
      table(k === 'quantities' ? 'hfj_spidx_quantity' : 'hfj_spidx_quantity_nrml', partitionId, now, flatten(list, k), [
        ['sp_missing', 'bool', (r) => r.missing],
        ['hash_identity', 'bigint', (r) => s(r.hashIdentity)],
        ['sp_system', 'text', (r) => r.system],
        ['sp_units', 'text', (r) => r.units],
        ['sp_value', 'numeric', (r) => r.value],
        ['hash_identity_and_units', 'bigint', (r) => s(r.hashIdentityAndUnits)],
        ['hash_identity_sys_units', 'bigint', (r) => s(r.hashIdentitySysUnits)],
      ]),
    ),
    table('hfj_spidx_uri', partitionId, now, flatten(list, 'uris'), [
      ['sp_missing', 'bool', (r) => r.missing],
      ['hash_identity', 'bigint', (r) => s(r.hashIdentity)],
      ['sp_uri', 'text', (r) => r.uri],
      ['hash_uri', 'bigint', (r) => s(r.hashUri)],
    ]),
    table('hfj_spidx_coords', partitionId, now, flatten(list, 'coords'), [
      ['hash_identity', 'bigint', (r) => s(r.hashIdentity)],
      ['sp_latitude', 'float8', (r) => r.latitude],
      ['sp_longitude', 'float8', (r) => r.longitude],
    ]),
  ];
  // Two parameters may share a path (Coverage.beneficiary is both `beneficiary` and `patient`):
  // HAPI writes one hfj_res_link row per (source, path, target).
  const seen = new Set<string>();
  const links = flatten(list, 'links').filter(({ res, row }) => {
    const key = JSON.stringify([res.resId, row.path, row.targetType, row.targetId, row.targetUrl, row.targetVersion]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  if (links.length) {
    // A target written in this batch is known here; any other is looked up by the statement
    // itself (its own inserts are not visible to it, hence the two ways).
    const cols: [string, string][] = [
      ['partition_id', 'int'],
      ['src_path', 'text'],
      ['src_resource_id', 'bigint'],
      ['source_resource_type', 'text'],
      ['target_resource_id', 'bigint'],
      ['target_resource_type', 'text'],
      ['target_resource_url', 'text'],
      ['target_resource_version', 'text'],
      ['target_fhir_id', 'text'],
      ['sp_updated', 'timestamptz'],
      ['owner_id', 'bigint'],
    ];
    const arrays = [
      links.map(() => partitionId),
      links.map((l) => l.row.path),
      links.map((l) => l.res.resId),
      links.map((l) => l.res.type),
      links.map((l) => (l.row.targetType && l.row.targetId ? (targets.get(`${l.row.targetType}/${l.row.targetId}`) ?? null) : null)),
      links.map((l) => l.row.targetType),
      links.map((l) => l.row.targetUrl),
      links.map((l) => l.row.targetVersion),
      links.map((l) => l.row.targetId),
      links.map(() => now),
      links.map((l) => l.res.ownerKey),
    ];
    out.push(insertLinks(cols, arrays));
  }
  const present = flatten(list, 'present');
  if (present.length) {
    out.push(
      bulkInsert(
        'hfj_res_param_present',
        [
          ['partition_id', 'int'],
          ['res_id', 'bigint'],
          ['sp_present', 'bool'],
          ['hash_presence', 'bigint'],
          ['owner_id', 'bigint'],
        ],
        [
          present.map(() => partitionId),
          present.map((p) => p.res.resId),
          present.map((p) => p.row.present),
          present.map((p) => s(p.row.hashPresence)),
          present.map((p) => p.res.ownerKey),
        ],
      ),
    );
  }
  return out.filter((x): x is Sql => x !== null);
}
