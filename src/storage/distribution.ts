/**
 * How the schema distributes on Citus (docs/scaling.md): the distribution key of a person's
 * records, and which tables are distributed, reference or kept on the coordinator.
 *
 * The key is owner_id: the user whose record it is, or, for a record no person owns (an app's own,
 * the directory's, every record written without users), -(2^31 + partition_id), one key per app
 * that no user's (positive) id can be. The code keeps "no owner" as null; these two functions are
 * the only place that turns one into the other.
 */

/** Added to a partition id (negated) to make the key of the partition's own records. */
const OWN_RECORDS_BASE = 2_147_483_648n;

/** The distribution key of a record of `partitionId` owned by `ownerId` (null: none). */
export function ownerKey(partitionId: number, ownerId: string | null): string {
  return ownerId ?? String(-(OWN_RECORDS_BASE + BigInt(partitionId)));
}

/** The owner a distribution key names (null: the partition's own records). */
export function ownerOfKey(key: string | number | null): string | null {
  if (key === null) return null;
  const s = String(key);
  return s.startsWith('-') ? null : s;
}

/** SQL for the key of `partitionSql`'s own records (e.g. `-(2147483648 + $1)`). */
export function ownRecordsKeySql(partitionSql: string): string {
  return `(-(${OWN_RECORDS_BASE} + ${partitionSql}))::bigint`;
}

/** HAPI's search index tables, one row per indexed value. */
export const INDEX_TABLES = [
  'hfj_spidx_string',
  'hfj_spidx_token',
  'hfj_spidx_date',
  'hfj_spidx_number',
  'hfj_spidx_quantity',
  'hfj_spidx_quantity_nrml',
  'hfj_spidx_uri',
  'hfj_spidx_coords',
] as const;

/** Distributed by owner_id, colocated with hfj_resource: a person's records on one shard. */
export const DISTRIBUTED_TABLES = [
  'hfj_resource',
  'hfj_res_ver',
  'hfj_res_tag',
  'hfj_history_tag',
  ...INDEX_TABLES,
  'hfj_res_link',
  'hfj_res_param_present',
  'trb_dedup_link',
  'trb_dedup_state',
] as const;

export const DISTRIBUTION_COLUMN = 'owner_id';

/**
 * Shared by every shard, copied to every worker node: the directory, tag definitions, the sync's
 * knowledge of each system. Written rarely, joined by the distributed tables (tags) or read whole.
 */
export const REFERENCE_TABLES = [
  'hfj_tag_def',
  'trb_system',
  'trb_system_org',
  'trb_directory_state',
  'trb_directory_import',
  'trb_sync_query_plan',
] as const;

/**
 * Everything else stays on the coordinator (Citus local tables): apps, users, tokens, connections
 * and their sync state, exports, subscriptions, the search snapshots, and pg-boss's own schema.
 * They are keyed by app, user or connection, small beside the records, and read by key.
 */
export function tableKind(table: string): 'distributed' | 'reference' | 'local' {
  if ((DISTRIBUTED_TABLES as readonly string[]).includes(table)) return 'distributed';
  if ((REFERENCE_TABLES as readonly string[]).includes(table)) return 'reference';
  return 'local';
}

/**
 * The statements that distribute a migrated database on Citus (run once on the coordinator, with
 * Tributary stopped; docs/scaling.md). Reference tables first: the distributed ones refer to them.
 */
export function citusStatements(shardCount = 32): string[] {
  return [
    `SET citus.shard_count = ${shardCount}`,
    ...REFERENCE_TABLES.map((t) => `SELECT create_reference_table('${t}')`),
    `SELECT create_distributed_table('hfj_resource', '${DISTRIBUTION_COLUMN}')`,
    ...DISTRIBUTED_TABLES.slice(1).map((t) => `SELECT create_distributed_table('${t}', '${DISTRIBUTION_COLUMN}', colocate_with => 'hfj_resource')`),
  ];
}
