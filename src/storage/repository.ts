/**
 * The PostgreSQL resource store in HAPI's table model: reads, versioned writes in bulk, history.
 * It stores what it is given; FHIR semantics (validation, conditional logic, ids) live in src/fhir.
 */
import type pg from 'pg';
import type { Resource } from '@medplum/fhirtypes';
import type { ResourceIndexes } from '../indexing/types.ts';
import type { Scope } from '../fhir/ports.ts';
import { IdAllocator } from './ids.ts';
import { rebuildJson, splitResource, type RowMeta, type SplitResource, type TagInput } from './meta.ts';
import * as sql from './sql.ts';
import { TagCache, type TagDefinition } from './tags.ts';
import { indexInserts } from './index-rows.ts';
import { ownerKey, ownerOfKey } from './distribution.ts';
import { updateResources } from './statements.ts';

export type Db = pg.Pool | pg.PoolClient;

export interface StoredVersion {
  resId: string;
  type: string;
  id: string;
  version: number;
  lastUpdated: Date;
  deleted: boolean;
  /** The full resource JSON (id and meta included); null for a delete version. */
  json: string | null;
}

export interface CurrentRow {
  resId: string;
  type: string;
  id: string;
  version: number;
  deleted: boolean;
  sha256: string | null;
  published: Date;
  updated: Date;
  /** Its owner (the user whose record it is), which it keeps; null for none. */
  ownerId: string | null;
}

export interface WriteItem {
  type: string;
  id: string;
  /** The current row, locked by lockCurrent in this transaction; null for a new resource. */
  existing: CurrentRow | null;
  /** null writes a delete (tombstone) version. */
  resource: Resource | null;
  split?: SplitResource;
  indexes?: ResourceIndexes;
}

export interface WriteResult {
  resId: string;
  version: number;
  lastUpdated: Date;
  /** false when the content did not change and no version was made. */
  changed: boolean;
  /** The resource as stored (id and meta included), null for a delete: no need to read it back. */
  json: string | null;
}

/** A version write() is making, as a write hook sees it (inside the write's transaction). */
export interface WrittenVersion {
  item: WriteItem;
  resId: string;
  version: number;
  /** The resource's owner (kept from its current row, or the scope's for a new one). */
  ownerId: string | null;
}

/**
 * Statements that go into a write's own statement (so they commit, or roll back, with it): the
 * subscriptions' outbox (src/subscriptions/hook.ts). Called once per write with what it makes.
 */
export type WriteHook = (scope: Scope, written: WrittenVersion[], now: Date, db: Db) => sql.Sql[] | Promise<sql.Sql[]>;

export interface VersionRow {
  res_id: string;
  res_type: string;
  fhir_id: string;
  res_ver: string;
  res_updated: Date;
  res_deleted_at: Date | null;
  res_text_vc: string | null;
  source_uri: string | null;
  /** hfj_tag_def ids in the order written (bigint as text), null when the version has no tags. */
  tag_ids: string[] | null;
}

function storedJson(item: WriteItem, split: SplitResource, version: number, lastUpdated: Date): string {
  // As a read would rebuild them: one of each distinct tag, in the order given.
  const seen = new Set<string>();
  const tags = split.tags
    .filter((t) => {
      const k = JSON.stringify([t.type, t.system, t.code, t.version, t.display]);
      return seen.has(k) ? false : (seen.add(k), true);
    })
    .map(
      (t) =>
        [t.type, t.system, t.code, t.display, t.version, t.userSelected] as [
          number,
          string | null,
          string | null,
          string | null,
          string | null,
          boolean | null,
        ],
    );
  return rebuildJson(split.text, { id: item.id, versionId: version, lastUpdated, source: split.source, tags: tags.length ? tags : null });
}

function toStored(row: VersionRow, tags: Map<string, TagDefinition>): StoredVersion {
  const version = Number(row.res_ver);
  const deleted = row.res_deleted_at !== null && row.res_text_vc === null;
  return {
    resId: row.res_id,
    type: row.res_type,
    id: row.fhir_id,
    version,
    lastUpdated: row.res_updated,
    deleted,
    json:
      deleted || row.res_text_vc === null
        ? null
        : rebuildJson(row.res_text_vc, {
            id: row.fhir_id,
            versionId: version,
            lastUpdated: row.res_updated,
            source: row.source_uri,
            tags: row.tag_ids?.map((t) => tags.get(t)!).filter(Boolean) ?? null,
          }),
  };
}

export class Repository {
  private readonly resIds = new IdAllocator('seq_resource_id');
  private readonly verIds = new IdAllocator('seq_resource_history_id');
  private readonly tagIds = new IdAllocator('seq_tagdef_id');
  private readonly resTagIds = new IdAllocator('seq_restag_id');
  private readonly histTagIds = new IdAllocator('seq_historytag_id');
  private readonly tags = new TagCache(this.tagIds);
  private readonly pool: pg.Pool;
  /** Write hooks (src/subscriptions): their statements join each write's. */
  readonly writeHooks: WriteHook[] = [];

  /**
   * `pool` serves the work done outside the caller's transaction: tag definitions are inserted and
   * committed on their own, so an id in the per-process cache always names a committed row.
   */
  constructor(pool: pg.Pool) {
    this.pool = pool;
  }

  /** Tag definitions by id (hfj_tag_def; from the cache, or read once). */
  tagDefinitions(db: Db, ids: Iterable<string>): Promise<Map<string, TagDefinition>> {
    return this.tags.define(db, ids);
  }

  /** Versions from rows of READ_COLUMNS (a cursor's, say), their tags defined. */
  async stored(db: Db, rows: VersionRow[]): Promise<StoredVersion[]> {
    const ids: string[] = [];
    for (const r of rows) if (r.tag_ids) ids.push(...r.tag_ids);
    const tags = await this.tags.define(db, ids);
    return rows.map((r) => toStored(r, tags));
  }

  async readCurrent(db: Db, scope: Scope, type: string, id: string): Promise<StoredVersion | undefined> {
    const { rows } = await db.query<VersionRow>(sql.readCurrent(scope, type, id));
    return (await this.stored(db, rows))[0];
  }

  /** Current versions of many resources (absent ones are missing from the map), in one query. */
  async readCurrentMany(db: Db, scope: Scope, keys: { type: string; id: string }[]): Promise<Map<string, StoredVersion>> {
    const { rows } = await db.query<VersionRow>(
      sql.readCurrentMany(
        scope,
        keys.map((k) => k.type),
        keys.map((k) => k.id),
      ),
    );
    return new Map((await this.stored(db, rows)).map((v) => [`${v.type}/${v.id}`, v]));
  }

  /** Current versions by res_id, in that order (deleted ones and those outside the scope left out). */
  async readByResIds(db: Db, scope: Scope, resIds: string[]): Promise<StoredVersion[]> {
    if (!resIds.length) return [];
    const { rows } = await db.query<VersionRow>(sql.readByResIds(scope, resIds));
    return this.stored(db, rows);
  }

  /** Versions selected by a query whose columns are READ_COLUMNS (search includes). */
  /** Named per shape, as versionsWith: on a pool of generic plans (the includes), planned once per connection. */
  async versions(db: Db, text: string, values: unknown[]): Promise<StoredVersion[]> {
    const { rows } = await db.query<VersionRow>({ name: sql.statementName(text), text, values });
    return this.stored(db, rows);
  }

  /**
   * A query with READ_COLUMNS and further columns of its own (the same in every row, e.g. a count):
   * the versions of the rows whose res_id is not null (a LEFT JOIN may give a row with none), and
   * the first row's further columns.
   */
  async versionsWith<T extends object>(db: Db, text: string, values: unknown[]): Promise<{ versions: StoredVersion[]; extra: T | undefined }> {
    // Named: a statement of the same shape is parsed once per connection (its plan is still made
    // for the values each time, see the search pool in plugins/db.ts).
    const { rows } = await db.query<VersionRow & T>({ name: sql.statementName(text), text, values });
    return {
      versions: await this.stored(
        db,
        rows.filter((r) => r.res_id !== null),
      ),
      extra: rows[0],
    };
  }

  async readVersion(db: Db, scope: Scope, type: string, id: string, version: number): Promise<StoredVersion | undefined> {
    const { rows } = await db.query<VersionRow>(sql.readVersion(scope, type, id, version));
    return (await this.stored(db, rows))[0];
  }

  async history(db: Db, q: sql.HistoryQuery): Promise<{ total: number; entries: StoredVersion[] }> {
    const [total, page] = await Promise.all([db.query<{ total: number }>(sql.history(q, true)), db.query<VersionRow>(sql.history(q, false))]);
    return { total: total.rows[0].total, entries: await this.stored(db, page.rows) };
  }

  async lockCurrent(client: pg.PoolClient, scope: Scope, keys: { type: string; id: string }[]): Promise<Map<string, CurrentRow>> {
    const out = new Map<string, CurrentRow>();
    if (keys.length === 0) return out;
    const { rows } = await client.query(
      sql.lockCurrent(
        scope,
        keys.map((k) => k.type),
        keys.map((k) => k.id),
      ),
    );
    for (const r of rows) {
      out.set(`${r.res_type}/${r.fhir_id}`, {
        resId: r.res_id,
        type: r.res_type,
        id: r.fhir_id,
        version: Number(r.res_ver),
        deleted: r.res_deleted_at !== null,
        sha256: r.hash_sha256,
        published: r.res_published,
        updated: r.res_updated,
        ownerId: ownerOfKey(r.owner_id),
      });
    }
    return out;
  }

  /**
   * Fails with the 409 of an id in use when another owner of the app holds one of these ids, which
   * the caller is about to create with the client's choice of id (an update that creates).
   */
  async claimIds(client: pg.PoolClient, scope: Scope, keys: { type: string; id: string }[]): Promise<void> {
    if (keys.length === 0) return;
    await client.query(
      sql.lockNewIds(
        scope.partitionId,
        keys.map((k) => k.type),
        keys.map((k) => k.id),
      ),
    );
    const { rows } = await client.query(
      sql.idsHeldByOthers(
        scope,
        keys.map((k) => k.type),
        keys.map((k) => k.id),
      ),
    );
    if (rows.length) throw idInUse();
  }

  /**
   * Writes a version of each item, with its index rows, tags and links, in the caller's
   * transaction. An item whose content equals its current version makes no version. New resources
   * belong to the scope's user (to none when the scope is the whole app).
   */
  async write(client: Db, scope: Scope, items: WriteItem[], now = new Date()): Promise<WriteResult[]> {
    const { partitionId } = scope;
    const results: WriteResult[] = new Array(items.length);
    const live: { item: WriteItem; resId: string; version: number; isNew: boolean; split: SplitResource | null }[] = [];
    const fresh = items.filter((i) => !i.existing).length;
    const newIds = fresh ? await this.resIds.take(client, fresh) : [];
    let n = 0;
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      const ex = item.existing;
      const split = item.resource ? (item.split ?? splitResource(item.resource)) : null;
      if (ex && !ex.deleted && split && ex.sha256 === split.sha256) {
        results[i] = {
          resId: ex.resId,
          version: ex.version,
          lastUpdated: ex.updated,
          changed: false,
          json: storedJson(item, split, ex.version, ex.updated),
        };
        continue;
      }
      if (ex && ex.deleted && !split) {
        results[i] = { resId: ex.resId, version: ex.version, lastUpdated: ex.updated, changed: false, json: null };
        continue;
      }
      const resId = ex ? ex.resId : String(newIds[n++]);
      const version = ex ? ex.version + 1 : 1;
      results[i] = { resId, version, lastUpdated: now, changed: true, json: split ? storedJson(item, split, version, now) : null };
      live.push({ item, resId, version, isNew: !ex, split });
    }
    if (live.length === 0) return results;

    const tagIdsPer = await this.tags.resolve(
      this.pool,
      live.map((l) => l.split?.tags ?? []),
    );
    const verPids = await this.verIds.take(client, live.length);
    const statements: sql.Sql[] = [];

    // The hooks' statements, made while the versions written over still have their index rows (a
    // subscription hears of a delete by what it deleted); sent with the rest, last.
    // A resource's owner: the one it has (kept: owner_id is set when it is created only), or the scope's for a new one.
    const ownerOf = (l: (typeof live)[number]) => (l.item.existing ? l.item.existing.ownerId : scope.ownerId);
    // Its distribution key, in every row written of it (the partition's own records' made once).
    const ownRecordsKey = ownerKey(partitionId, null);
    const keyOf = (l: (typeof live)[number]) => ownerOf(l) ?? ownRecordsKey;
    const hooked: sql.Sql[] = [];
    for (const hook of this.writeHooks) {
      const written = live.map((l) => ({ item: l.item, resId: l.resId, version: l.version, ownerId: ownerOf(l) }));
      hooked.push(...(await hook(scope, written, now, client)));
    }

    const existing = live.filter((l) => !l.isNew);
    if (existing.length)
      await client.query(
        sql.deleteIndexes(
          existing.map((l) => l.resId),
          existing.map(keyOf),
        ),
      );

    // hfj_resource: new rows, then updates of existing ones.
    const res = live.map((l) => {
      const ix = l.item.indexes;
      return {
        l,
        flags: [
          !!ix?.strings.some((r) => !r.missing),
          !!ix?.tokens.some((r) => !r.missing),
          !!ix?.dates.some((r) => !r.missing),
          !!ix?.numbers.some((r) => !r.missing),
          !!ix?.quantities.some((r) => !r.missing),
          !!ix?.uris.some((r) => !r.missing),
          !!ix?.coords.length,
          !!ix?.links.length,
        ],
      };
    });
    const cols = (pick: (x: (typeof res)[number]) => unknown) => res.map(pick);
    const resourceColumns: [string, string][] = [
      ['res_id', 'bigint'],
      ['partition_id', 'int'],
      ['res_type', 'text'],
      ['fhir_id', 'text'],
      ['res_ver', 'bigint'],
      ['res_published', 'timestamptz'],
      ['res_updated', 'timestamptz'],
      ['res_deleted_at', 'timestamptz'],
      ['hash_sha256', 'text'],
      ['has_tags', 'bool'],
      ['sp_string_present', 'bool'],
      ['sp_token_present', 'bool'],
      ['sp_date_present', 'bool'],
      ['sp_number_present', 'bool'],
      ['sp_quantity_present', 'bool'],
      ['sp_uri_present', 'bool'],
      ['sp_coords_present', 'bool'],
      ['sp_has_links', 'bool'],
      ['res_language', 'text'],
      ['owner_id', 'bigint'],
    ];
    const resourceArrays = [
      cols((x) => x.l.resId),
      cols(() => partitionId),
      cols((x) => x.l.item.type),
      cols((x) => x.l.item.id),
      cols((x) => x.l.version),
      cols((x) => (x.l.item.existing ? x.l.item.existing.published : now)),
      cols(() => now),
      cols((x) => (x.l.split ? null : now)),
      cols((x) => x.l.split?.sha256 ?? null),
      cols((x) => !!x.l.split?.tags.length),
      ...[0, 1, 2, 3, 4, 5, 6, 7].map((k) => cols((x) => x.flags[k])),
      cols((x) => ((x.l.item.resource as { language?: string } | null)?.language ?? null)?.slice(0, 20) ?? null),
      cols((x) => keyOf(x.l)),
    ];
    const newMask = res.map((x) => x.l.isNew);
    if (newMask.some(Boolean)) {
      statements.push(
        sql.bulkInsert(
          'hfj_resource',
          resourceColumns,
          resourceArrays.map((a) => a.filter((_, i) => newMask[i])),
        ),
      );
    }
    if (newMask.some((b) => !b)) {
      const upd = resourceArrays.map((a) => a.filter((_, i) => !newMask[i]));
      // A resource keeps its owner: owner_id is set when it is created only.
      const sets = resourceColumns
        .slice(4)
        .filter(([c]) => c !== 'owner_id')
        .map(([c]) => c);
      statements.push(updateResources(resourceColumns, sets, upd));
    }

    // hfj_res_ver
    statements.push(
      sql.bulkInsert(
        'hfj_res_ver',
        [
          ['pid', 'bigint'],
          ['partition_id', 'int'],
          ['res_id', 'bigint'],
          ['res_type', 'text'],
          ['res_ver', 'bigint'],
          ['res_encoding', 'text'],
          ['res_text_vc', 'text'],
          ['res_published', 'timestamptz'],
          ['res_updated', 'timestamptz'],
          ['res_deleted_at', 'timestamptz'],
          ['has_tags', 'bool'],
          ['source_uri', 'text'],
          ['owner_id', 'bigint'],
        ],
        [
          verPids.map(String),
          live.map(() => partitionId),
          live.map((l) => l.resId),
          live.map((l) => l.item.type),
          live.map((l) => l.version),
          live.map((l) => (l.split ? 'JSON' : 'DEL')),
          live.map((l) => l.split?.text ?? null),
          live.map((l) => (l.item.existing ? l.item.existing.published : now)),
          live.map(() => now),
          live.map((l) => (l.split ? null : now)),
          live.map((l) => !!l.split?.tags.length),
          live.map((l) => l.split?.source ?? null),
          live.map(keyOf),
        ],
      ),
    );

    // Tags: the current set (hfj_res_tag) and the version's (hfj_history_tag).
    const tagRows: { resId: string; type: string; verPid: string; tagId: string; ownerKey: string }[] = [];
    live.forEach((l, i) => {
      for (const tagId of tagIdsPer[i]) tagRows.push({ resId: l.resId, type: l.item.type, verPid: String(verPids[i]), tagId, ownerKey: keyOf(l) });
    });
    if (tagRows.length) {
      const [resTagPids, histTagPids] = await Promise.all([
        this.resTagIds.take(client, tagRows.length),
        this.histTagIds.take(client, tagRows.length),
      ]);
      statements.push(
        sql.bulkInsert(
          'hfj_res_tag',
          [
            ['pid', 'bigint'],
            ['partition_id', 'int'],
            ['res_id', 'bigint'],
            ['res_type', 'text'],
            ['tag_id', 'bigint'],
            ['owner_id', 'bigint'],
          ],
          [
            resTagPids.map(String),
            tagRows.map(() => partitionId),
            tagRows.map((t) => t.resId),
            tagRows.map((t) => t.type),
            tagRows.map((t) => t.tagId),
            tagRows.map((t) => t.ownerKey),
          ],
        ),
        sql.bulkInsert(
          'hfj_history_tag',
          [
            ['pid', 'bigint'],
            ['partition_id', 'int'],
            ['res_ver_pid', 'bigint'],
            ['res_id', 'bigint'],
            ['res_type', 'text'],
            ['tag_id', 'bigint'],
            ['owner_id', 'bigint'],
          ],
          [
            histTagPids.map(String),
            tagRows.map(() => partitionId),
            tagRows.map((t) => t.verPid),
            tagRows.map((t) => t.resId),
            tagRows.map((t) => t.type),
            tagRows.map((t) => t.tagId),
            tagRows.map((t) => t.ownerKey),
          ],
        ),
      );
    }

    // Index rows and links of the live (not deleted) resources.
    const indexed = live.filter((l) => l.split && l.item.indexes);
    if (indexed.length) {
      const inBatch = new Map<string, string>();
      for (const l of live) if (l.split) inBatch.set(`${l.item.type}/${l.item.id}`, l.resId);
      const owned = indexed.map((l) => ({ resId: l.resId, type: l.item.type, ownerKey: keyOf(l), indexes: l.item.indexes! }));
      statements.push(...indexInserts(partitionId, now, owned, inBatch));
    }

    statements.push(...hooked);
    await client.query(sql.combine(statements));
    return results;
  }
}

export type { TagInput };

/**
 * What PostgreSQL raises when a new resource's id is taken, as the unique index once did across
 * the app: the FHIR layer answers it with its 409 (src/fhir/errors.ts fromDatabaseError).
 */
function idInUse(): Error {
  return Object.assign(new Error('duplicate key value violates unique constraint "idx_res_type_fhir_id"'), {
    code: '23505',
    constraint: 'idx_res_type_fhir_id',
  });
}
