/**
 * FHIR's RESTful interactions on the resource store, free of HTTP: read, vread, create, update,
 * patch, delete (each also conditional), history and the minimal search they rely on.
 * See: https://hl7.org/fhir/R4/http.html
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Resource, SearchParameter } from '@medplum/fhirtypes';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { Coalescer, scopeKey } from '../storage/coalescer.ts';
import { Repository, type CurrentRow, type StoredVersion, type WriteItem, type WriteResult } from '../storage/repository.ts';
import type { HistoryQuery } from '../storage/sql.ts';
import { badRequest, fhirError, fromDatabaseError, gone, issuesError, notFound, preconditionFailed } from './errors.ts';
import {
  DIRECTORY_SCOPE,
  DIRECTORY_TYPES,
  type RequestContext,
  type ResourceIndexer,
  type ResourceValidator,
  type Scope,
  type SearchParamLookup,
} from './ports.ts';
import { SearchEngine } from '../search/engine.ts';
import { inTransaction } from '../storage/transaction.ts';
import { isResourceType } from './resource-type.ts';

/** A system-level history of some types (historyOfTypes) pages through this many entries. */
export const HISTORY_MERGE_CAP = 10_000;

export const ID_PATTERN = /^[A-Za-z0-9\-.]{1,64}$/;

export interface ServiceDeps {
  pool: pg.Pool;
  /** Search queries: a pool whose statements are planned for their values (see plugins/db.ts). */
  searchPool?: pg.Pool;
  validator: ResourceValidator;
  indexer: ResourceIndexer;
  params: SearchParamLookup;
  repo?: Repository;
  /** Makes a SearchParameter being written searchable; throws a 400 when it cannot be used. */
  onSearchParameter?: (sp: SearchParameter) => void;
}

export interface WriteOutcome {
  /** 200 updated or matched, 201 created. */
  status: number;
  stored: StoredVersion;
}

export function checkType(type: string): void {
  if (!isResourceType(type)) throw fhirError(404, 'not-supported', `"${type}" is not a FHIR R4 resource type.`);
}

export function checkId(id: string): void {
  if (!ID_PATTERN.test(id)) throw badRequest(`"${id}" is not a valid resource id (1 to 64 of A-Z a-z 0-9 - .).`);
  // "." and ".." match the id regex, but as URL path segments they are dot-segments that every URL
  // resolver removes (RFC 3986 section 5.2.4), so Patient/.. could never be read back.
  if (id === '.' || id === '..') throw badRequest(`"${id}" is not a usable resource id: it is a relative path segment in a URL.`);
}

/** A version's ETag: weak, its version number quoted. See: https://hl7.org/fhir/R4/http.html#versioning */
export function etag(v: number): string {
  return `W/"${v}"`;
}

/** Parses an ETag / If-Match value such as W/"3" into a version number. */
export function parseVersionTag(tag: string): number {
  const m = /^(?:W\/)?"?(\d{1,15})"?$/.exec(tag.trim());
  if (!m) throw badRequest(`If-Match "${tag}" is not a version ETag such as W/"3".`);
  return Number(m[1]);
}

export class FhirService {
  readonly pool: pg.Pool;
  readonly repo: Repository;
  readonly validator: ResourceValidator;
  readonly indexer: ResourceIndexer;
  readonly params: SearchParamLookup;
  readonly search: SearchEngine;
  private readonly onSearchParameter?: (sp: SearchParameter) => void;
  /** Creates with new ids (no lock needed) that arrive together share one statement. */
  private readonly creates: Coalescer<Scope, WriteItem, WriteResult>;
  /** Reads by id outside a transaction that arrive together share one query. */
  private readonly reads: Coalescer<Scope, { type: string; id: string }, StoredVersion | undefined>;

  constructor(deps: ServiceDeps) {
    this.pool = deps.pool;
    this.repo = deps.repo ?? new Repository(deps.pool);
    this.creates = new Coalescer((scope: Scope, items: WriteItem[]) => this.repo.write(this.pool, scope, items), 100, scopeKey);
    this.reads = new Coalescer(
      async (scope: Scope, keys: { type: string; id: string }[]) => {
        const found = await this.repo.readCurrentMany(this.pool, scope, keys);
        return keys.map((k) => found.get(`${k.type}/${k.id}`));
      },
      200,
      scopeKey,
    );
    this.validator = deps.validator;
    this.indexer = deps.indexer;
    this.params = deps.params;
    this.onSearchParameter = deps.onSearchParameter;
    this.search = new SearchEngine({ pool: deps.searchPool ?? deps.pool, fixedPool: deps.pool, repo: this.repo, params: deps.params });
  }

  /** Runs fn in one database transaction; PostgreSQL errors a client caused become 4xx. */
  async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    try {
      return await inTransaction(this.pool, fn);
    } catch (err) {
      throw fromDatabaseError(err);
    }
  }

  /** `db`: a transaction's client, so a transaction's GET entries see its own writes. */
  async read(ctx: RequestContext, type: string, id: string, db: pg.Pool | pg.PoolClient = this.pool): Promise<StoredVersion> {
    checkType(type);
    checkId(id);
    // Outside a transaction, reads arriving together share one query.
    const own = db === this.pool ? await this.reads.submit(ctx, { type, id }) : await this.repo.readCurrent(db, ctx, type, id);
    const v = own ?? (this.readsDirectory(ctx, type) ? await this.repo.readCurrent(db, DIRECTORY_SCOPE, type, id) : undefined);
    if (!v) throw notFound(`${type}/${id} is not known.`);
    if (v.deleted) throw gone(`${type}/${id} was deleted (version ${v.version}).`);
    return v;
  }

  async vread(ctx: RequestContext, type: string, id: string, vid: string, db: pg.Pool | pg.PoolClient = this.pool): Promise<StoredVersion> {
    checkType(type);
    checkId(id);
    if (!/^\d{1,15}$/.test(vid)) throw badRequest(`"${vid}" is not a version number.`);
    const v =
      (await this.repo.readVersion(db, ctx, type, id, Number(vid))) ??
      (this.readsDirectory(ctx, type) && !(await this.repo.readCurrent(db, ctx, type, id))
        ? await this.repo.readVersion(db, DIRECTORY_SCOPE, type, id, Number(vid))
        : undefined);
    if (!v) throw notFound(`${type}/${id} has no version ${vid}.`);
    if (v.deleted) throw gone(`Version ${vid} of ${type}/${id} is a delete.`);
    return v;
  }

  /** The body of a create or update: a JSON object of the given type (id checked by the caller). */
  checkBody(body: unknown, type: string): Resource {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw badRequest('The body must be a FHIR resource as a JSON object.');
    }
    const rt = (body as { resourceType?: unknown }).resourceType;
    if (typeof rt !== 'string') throw badRequest('The resource has no resourceType.', ['resourceType']);
    if (rt !== type) throw badRequest(`The body is a ${rt} but the URL is for ${type}.`, ['resourceType']);
    return body as Resource;
  }

  /** Validates and indexes a resource for writing; throws 400 with every problem found. */
  prepare(ctx: RequestContext, resource: Resource): Pick<WriteItem, 'resource' | 'indexes'> {
    const issues = this.validator.validate(resource);
    if (issues.some((i) => i.severity === 'error' || i.severity === 'fatal')) throw issuesError(400, issues);
    // The search registry is shared by every app: only the server's own (built-in) app, partition 0
    // at app level, makes SearchParameters searchable. Elsewhere they are stored as they are.
    if (resource.resourceType === 'SearchParameter' && resource.status !== 'retired' && ctx.partitionId === 0 && ctx.ownerId === null)
      this.onSearchParameter?.(resource);
    return { resource, indexes: this.indexer.extract(resource, null) };
  }

  /** ids of the resources of `type` matching a query string, at most `limit` + 1 of them. */
  async match(db: pg.Pool | pg.PoolClient, ctx: RequestContext, type: string, query: string, limit = 2): Promise<{ resId: string; id: string }[]> {
    const params = new URLSearchParams(query);
    if ([...params.keys()].length === 0) throw badRequest(`The condition "${query}" has no search parameters.`);
    // A conditional write matches the app's own resources, never the shared directory's.
    return this.search.match(db, { ...ctx, ownOnly: true }, type, params, limit);
  }

  async create(ctx: RequestContext, type: string, body: unknown, opts: { ifNoneExist?: string } = {}): Promise<WriteOutcome> {
    checkType(type);
    const resource = this.checkBody(body, type);
    const id = randomUUID();
    const prepared = this.prepare(ctx, { ...resource, id } as Resource);
    if (!opts.ifNoneExist) {
      // A new server-assigned id needs no lock: the write is one statement, atomic on its own.
      const res = await this.creates.submit(ctx, { type, id, existing: null, ...prepared });
      return { status: 201, stored: this.storedAfterWrite(type, id, res) };
    }
    const condition = opts.ifNoneExist;
    return this.transaction(async (client) => {
      const found = await this.match(client, ctx, type, condition);
      if (found.length > 1) throw preconditionFailed(`If-None-Exist matched ${found.length} or more ${type} resources; it must match at most one.`);
      if (found.length === 1) {
        const existing = await this.repo.readCurrent(client, ctx, type, found[0].id);
        return { status: 200, stored: existing! };
      }
      const [res] = await this.writeItems(client, ctx, [{ type, id, existing: null, ...prepared }]);
      return { status: 201, stored: this.storedAfterWrite(type, id, res) };
    });
  }

  async update(ctx: RequestContext, type: string, id: string, body: unknown, opts: { ifMatch?: string } = {}): Promise<WriteOutcome> {
    checkType(type);
    checkId(id);
    const resource = this.checkBody(body, type);
    if (resource.id === undefined) throw badRequest('An update must carry the id of the resource in its body.', ['id']);
    if (resource.id !== id) throw badRequest(`The body's id "${resource.id}" differs from the URL's id "${id}".`, ['id']);
    const wanted = opts.ifMatch === undefined ? undefined : parseVersionTag(opts.ifMatch);
    return this.transaction(async (client) => {
      const existing = (await this.repo.lockCurrent(client, ctx, [{ type, id }])).get(`${type}/${id}`) ?? null;
      if (!existing) await this.repo.claimIds(client, ctx, [{ type, id }]);
      checkIfMatch(type, id, existing, wanted);
      const [res] = await this.writeItems(client, ctx, [{ type, id, existing, ...this.prepare(ctx, resource) }]);
      return { status: existing && !existing.deleted ? 200 : 201, stored: this.storedAfterWrite(type, id, res) };
    });
  }

  async conditionalUpdate(ctx: RequestContext, type: string, query: string, body: unknown): Promise<WriteOutcome> {
    checkType(type);
    const resource = this.checkBody(body, type);
    return this.transaction(async (client) => {
      const found = await this.match(client, ctx, type, query);
      if (found.length > 1) throw preconditionFailed(`The condition matched more than one ${type}; a conditional update needs at most one.`);
      let id: string;
      if (found.length === 1) {
        id = found[0].id;
        if (resource.id !== undefined && resource.id !== id)
          throw badRequest(`The body's id "${resource.id}" differs from the matched resource ${type}/${id}.`, ['id']);
      } else {
        if (resource.id !== undefined) checkId(resource.id);
        id = resource.id ?? randomUUID();
      }
      const existing = (await this.repo.lockCurrent(client, ctx, [{ type, id }])).get(`${type}/${id}`) ?? null;
      if (!existing && resource.id !== undefined) await this.repo.claimIds(client, ctx, [{ type, id }]);
      const [res] = await this.writeItems(client, ctx, [{ type, id, existing, ...this.prepare(ctx, { ...resource, id } as Resource) }]);
      return { status: existing && !existing.deleted ? 200 : 201, stored: this.storedAfterWrite(type, id, res) };
    });
  }

  async patch(ctx: RequestContext, type: string, id: string, patch: unknown, opts: { ifMatch?: string } = {}): Promise<WriteOutcome> {
    checkType(type);
    checkId(id);
    const wanted = opts.ifMatch === undefined ? undefined : parseVersionTag(opts.ifMatch);
    return this.transaction(async (client) => {
      const existing = (await this.repo.lockCurrent(client, ctx, [{ type, id }])).get(`${type}/${id}`) ?? null;
      if (!existing) throw notFound(`${type}/${id} is not known.`);
      if (existing.deleted) throw gone(`${type}/${id} was deleted.`);
      checkIfMatch(type, id, existing, wanted);
      const current = await this.repo.readCurrent(client, ctx, type, id);
      const patched = applyJsonPatch(JSON.parse(current!.json!), patch);
      const [res] = await this.writeItems(client, ctx, [{ type, id, existing, ...this.prepare(ctx, patched) }]);
      return { status: 200, stored: this.storedAfterWrite(type, id, res) };
    });
  }

  /** Deletes; answers the version written, or undefined when there was nothing to delete. */
  async delete(ctx: RequestContext, type: string, id: string): Promise<number | undefined> {
    checkType(type);
    checkId(id);
    return this.transaction(async (client) => {
      const existing = (await this.repo.lockCurrent(client, ctx, [{ type, id }])).get(`${type}/${id}`) ?? null;
      if (!existing || existing.deleted) return undefined;
      const [res] = await this.repo.write(client, ctx, [{ type, id, existing, resource: null }]);
      return res.version;
    });
  }

  async conditionalDelete(ctx: RequestContext, type: string, query: string): Promise<number> {
    checkType(type);
    return this.transaction(async (client) => {
      const found = await this.match(client, ctx, type, query);
      if (found.length > 1) throw preconditionFailed(`The condition matched more than one ${type}; a conditional delete removes at most one.`);
      if (found.length === 0) return 0;
      const locked = await this.repo.lockCurrent(client, ctx, [{ type, id: found[0].id }]);
      await this.repo.write(client, ctx, [{ type, id: found[0].id, existing: locked.get(`${type}/${found[0].id}`)!, resource: null }]);
      return 1;
    });
  }

  /**
   * History of a resource, a type or the whole scope; `types`: of these types only (a system-level
   * history for a token whose SMART scopes grant some types).
   * See: https://hl7.org/fhir/R4/http.html#history
   */
  async history(ctx: RequestContext, q: Omit<HistoryQuery, 'scope'> & { types?: string[] }): Promise<{ total: number; entries: StoredVersion[] }> {
    if (q.type) checkType(q.type);
    if (q.id) checkId(q.id);
    if (!q.type && q.types) return this.historyOfTypes(ctx, q.types, q);
    let result = await this.repo.history(this.pool, { ...q, scope: ctx });
    // A directory resource's history, when the app has no resource of its own under that id.
    if (q.id && result.total === 0 && this.readsDirectory(ctx, q.type!))
      result = await this.repo.history(this.pool, { ...q, scope: DIRECTORY_SCOPE });
    if (q.id && result.total === 0) throw notFound(`${q.type}/${q.id} is not known.`);
    return result;
  }

  /**
   * A system-level history of some types: each type's newest `offset + count` versions, merged
   * newest first. Paging through it reads every type's versions up to the page, so it goes as far
   * as HISTORY_MERGE_CAP entries (then _since narrows it).
   */
  private async historyOfTypes(
    ctx: RequestContext,
    types: string[],
    q: Omit<HistoryQuery, 'scope' | 'type' | 'id'>,
  ): Promise<{ total: number; entries: StoredVersion[] }> {
    if (q.offset + q.count > HISTORY_MERGE_CAP) {
      throw badRequest(
        `A history across the types the access token allows pages through its first ${HISTORY_MERGE_CAP} entries; use _since (or one type's _history) to go further.`,
      );
    }
    const parts = await Promise.all(
      types.map((type) => this.repo.history(this.pool, { ...q, type, scope: ctx, offset: 0, count: q.offset + q.count })),
    );
    const all = parts.flatMap((p) => p.entries);
    all.sort((a, b) => b.lastUpdated.getTime() - a.lastUpdated.getTime() || Number(BigInt(b.resId) - BigInt(a.resId)) || b.version - a.version);
    return { total: parts.reduce((n, p) => n + p.total, 0), entries: all.slice(q.offset, q.offset + q.count) };
  }

  /** Whether a read of `type` by id falls back to the directory's partition (Organization, Endpoint, for any app). */
  private readsDirectory(ctx: Scope, type: string): boolean {
    return ctx.partitionId >= 0 && DIRECTORY_TYPES.includes(type);
  }

  /** Writes prepared items in the caller's transaction. */
  writeItems(client: pg.PoolClient, ctx: RequestContext, items: WriteItem[]): Promise<WriteResult[]> {
    return this.repo.write(client, ctx, items);
  }

  private storedAfterWrite(type: string, id: string, res: WriteResult): StoredVersion {
    return { resId: res.resId, type, id, version: res.version, lastUpdated: res.lastUpdated, deleted: false, json: res.json };
  }
}

export function checkIfMatch(type: string, id: string, existing: CurrentRow | null, wanted: number | undefined): void {
  if (wanted === undefined) return;
  if (!existing || existing.deleted) throw preconditionFailed(`If-Match names version ${wanted} of ${type}/${id}, which does not exist.`);
  if (existing.version !== wanted) {
    throw preconditionFailed(`If-Match names version ${wanted} of ${type}/${id} but the current version is ${existing.version}.`);
  }
}

/** RFC 6902 JSON Patch. See: https://hl7.org/fhir/R4/http.html#patch */
export function applyJsonPatch(doc: Resource, patch: unknown): Resource {
  if (!Array.isArray(patch)) throw badRequest('A JSON Patch body must be an array of operations.');
  // The patch mutates doc in place: remember its identity first (the transaction PATCH path relies on this check too).
  const { resourceType, id } = doc;
  let patched: Resource;
  try {
    patched = fastJsonPatch.applyPatch(doc, patch as Operation[], true, true).newDocument as Resource;
  } catch (err) {
    const name = (err as { name?: string }).name;
    if (name === 'TEST_OPERATION_FAILED') throw fhirError(422, 'processing', 'A "test" operation of the patch failed.');
    throw badRequest(`The JSON Patch is invalid: ${(err as Error).message.split('\n')[0]}`);
  }
  if (patched?.resourceType !== resourceType || patched.id !== id) throw badRequest('A patch may not change the resourceType or id.');
  return patched;
}
