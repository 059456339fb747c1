/**
 * FHIR search: a query string in, a searchset Bundle out.
 *
 * - Criteria become SQL over the HAPI indexes (./params/), inside the request's partition.
 * - Unsorted results come in res_id order and page by keyset (./keyset.ts); sorted results page
 *   through a snapshot fixed when the first page is asked for (./snapshot.ts).
 * - `_include` / `_revinclude` (with `:iterate`, `*` and a target type) follow hfj_res_link (./include.ts).
 * - `_total`: none, estimate (the planner's estimate), accurate; by default the count is given when
 *   it is at most COUNT_CAP (counting further would cost more than the page).
 * See: https://hl7.org/fhir/R4/search.html
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Bundle, BundleLink } from '@medplum/fhirtypes';
import type { Db, Repository, StoredVersion } from '../storage/repository.ts';
import { badRequest, fhirError } from '../fhir/errors.ts';
import type { RequestContext, SearchParamLookup } from '../fhir/ports.ts';
import type { ResourceScope } from '../auth/scopes.ts';
import { anchorAsCondition, nestUnderReference, resourceSource, type Anchored } from './anchor.ts';
import { pageUrl, SearchResult } from './bundle.ts';
import { PatientCompartment } from './compartment.ts';
import { grantCondition } from './grants.ts';
import { Includes } from './include.ts';
import { keysetPage } from './keyset.ts';
import { MAX_INCLUDES } from './limits.ts';
import { paramCondition, namesMatchesById } from './params/condition.ts';
import { conditionContext, ownedRows, type ConditionContext } from './params/context.ts';
import { CONTROL_PARAMS, paramCode } from './params/key.ts';
import { dedupCondition, mergedView } from '../dedup/view.ts';
import { compartmentCondition as compartmentLinks } from './params/reference.ts';
import type { PageRequest } from './page.ts';
import { known, parseQuery, warning } from './parse.ts';
import { scoped } from './scope.ts';
import { SnapshotExpiry, sortedPage } from './snapshot.ts';
import { orderBy } from './sort.ts';
import { SqlBuilder, type Condition } from './sql-builder.ts';
import { count } from './total.ts';

// What other areas import from here.
export { SearchResult } from './bundle.ts';
export { PatientCompartment } from './compartment.ts';
export { COUNT_CAP, DEFAULT_COUNT, MAX_COUNT, MAX_CRITERIA, MAX_INCLUDE_PARAMS, MAX_INCLUDES, MAX_SORT_KEYS, SNAPSHOT_CAP } from './limits.ts';
export { parseTypes } from './parse.ts';

export interface SearchOptions {
  /** `Prefer: handling=strict`: unknown parameters are a 400 instead of a warning. */
  strict?: boolean;
  /** Run on this client (inside a transaction) instead of the pool. */
  client?: pg.PoolClient;
  /** Compartment search: `Patient/123/Observation`. */
  compartment?: { type: string; id: string };
  /** The path the links are built on, e.g. `Observation` or `` for a system search. */
  path: string;
  /**
   * The token's SMART scopes: matches, included resources and the targets of chains are of types
   * they allow to search, with their v2 filters applied (see grantCondition). Absent: every type.
   */
  grants?: ResourceScope[];
}

export interface SearchEngineDeps {
  /** Searches whose best plan depends on their values: planned for each request's. */
  pool: pg.Pool;
  /**
   * Statements whose plan the SQL itself fixes (searches anchored on ids, includes): planned once
   * per connection and shape (a generic plan), where planning cost as much as running them.
   */
  fixedPool?: pg.Pool;
  repo: Repository;
  params: SearchParamLookup;
  /** The Patient compartment's definition (read once per instance); a new one when absent. */
  compartment?: PatientCompartment;
}

export class SearchEngine {
  private readonly pool: pg.Pool;
  private readonly fixedPool: pg.Pool;
  private readonly repo: Repository;
  readonly params: SearchParamLookup;
  readonly compartment: PatientCompartment;
  private readonly included: Includes;
  private readonly expiry: SnapshotExpiry;

  constructor(deps: SearchEngineDeps) {
    this.pool = deps.pool;
    this.fixedPool = deps.fixedPool ?? deps.pool;
    this.repo = deps.repo;
    this.params = deps.params;
    this.compartment = deps.compartment ?? new PatientCompartment();
    this.included = new Includes(this.params, this.repo);
    this.expiry = new SnapshotExpiry(this.pool);
  }

  private context(ctx: RequestContext, b: SqlBuilder, db: Db, grants?: ResourceScope[]): ConditionContext {
    return conditionContext(this.params, ctx, b, db, grants);
  }

  /** The conditions (over `hfj_resource r`) of the criteria, for one type or several, and the ids they are anchored on. */
  private async where(
    c: ConditionContext,
    types: string[] | null,
    criteria: [string, string][],
    compartmentOf?: { type: string; id: string },
  ): Promise<Anchored> {
    // A search of every type (types null) leaves the directory's partition out.
    const where: Condition[] = [scoped(c, 'r', types ?? [])];
    const granted = await grantCondition(c, 'r', types);
    if (granted !== 'true') where.push(granted);
    const perType = async (type: string | null): Promise<Anchored> => {
      const conds: Condition[] = [];
      for (const [key, value] of criteria) conds.push(await paramCondition(c, 'r', type ?? '*', key, value));
      if (compartmentOf && type) conds.push(await this.compartmentCondition(c, type, compartmentOf));
      return nestUnderReference(conds);
    };
    if (types === null || types.length === 1) {
      const own = await perType(types?.[0] ?? null);
      if (types) where.push(`r.res_type = ${c.b.param(types[0])}`);
      // An anchored search looks each id up with the owners the scope reaches (a parameter only then).
      const owners = own.ids === null ? '' : ownedRows(c, types?.[0] ?? '*', 'r');
      return { ids: own.ids, conds: [...where, ...own.conds], own: owners };
    }
    const ors: string[] = [];
    for (const t of types)
      ors.push(
        `(r.res_type = ${c.b.param(t)}${anchorAsCondition(await perType(t))
          .map((x) => ` AND ${x}`)
          .join('')})`,
      );
    where.push(`(${ors.join(' OR ')})`);
    return { ids: null, conds: where };
  }

  private async compartmentCondition(c: ConditionContext, type: string, of: { type: string; id: string }): Promise<Condition> {
    if (of.type !== 'Patient') throw fhirError(400, 'not-supported', `Only the Patient compartment is supported, not ${of.type}.`);
    if (type === 'Patient') return `r.fhir_id = ${c.b.param(of.id)}`;
    const params = (this.compartment.params().get(type) ?? []).map((code) => this.params.get(type, code)).filter((sp) => sp !== undefined);
    // The reference parameters in one link condition (the search anchors on it); any other apart.
    const refs = params.filter((sp) => sp.type === 'reference');
    const ors = refs.length ? [compartmentLinks(c, 'r', type, refs, of.id)] : [];
    for (const sp of params) {
      if (sp.type !== 'reference') ors.push(await paramCondition(c, 'r', type, sp.code, `Patient/${of.id.replace(/[\\,|$]/g, (x) => `\\${x}`)}`));
    }
    return ors.length === 0 ? 'false' : ors.length === 1 ? ors[0] : `(${ors.join(' OR ')})`;
  }

  /** res_id and fhir_id of the resources matching a condition (conditional create/update/delete). */
  async match(db: Db, ctx: RequestContext, type: string, query: URLSearchParams, limit: number): Promise<{ resId: string; id: string }[]> {
    const criteria = [...query].filter(([k]) => !CONTROL_PARAMS.has(k));
    if (!criteria.length) throw badRequest('A condition needs at least one search parameter.');
    for (const [k] of criteria) {
      if (!known(this.params, type, k)) throw badRequest(`${type} has no search parameter "${paramCode(k).slice(0, 100)}".`);
    }
    const b = new SqlBuilder();
    const where = await this.where(this.context(ctx, b, db), [type], criteria);
    const { rows } = await db.query({
      text: `SELECT r.res_id, r.fhir_id FROM ${resourceSource(where)} LIMIT ${Math.trunc(limit) + 1}`,
      values: b.values,
    });
    return rows.map((r) => ({ resId: r.res_id, id: r.fhir_id }));
  }

  /**
   * What a Bulk Data export reads of one type: `hfj_resource r WHERE ...` (the request's scope, the
   * token's grants and any of `filters`, the `_typeFilter` queries of the type; none: all) and its
   * values. Unknown parameters and values that do not parse are 400s, as in a search.
   * See: https://hl7.org/fhir/uv/bulkdata/export.html#_typefilter-experimental-query-parameter
   */
  async exportSource(
    ctx: RequestContext,
    type: string,
    filters: [string, string][][],
    grants?: ResourceScope[],
  ): Promise<{ from: string; values: unknown[] }> {
    for (const [k] of filters.flat()) {
      if (CONTROL_PARAMS.has(k) || k.startsWith('_include') || k.startsWith('_revinclude'))
        throw badRequest(`_typeFilter takes search criteria only, not "${k.slice(0, 50)}".`);
      if (!known(this.params, type, k)) throw badRequest(`${type} has no search parameter "${paramCode(k).slice(0, 100)}" (in _typeFilter).`);
    }
    const b = new SqlBuilder();
    const c = this.context(ctx, b, this.pool, grants);
    const where = await this.where(c, [type], filters.length === 1 ? filters[0] : []);
    if (filters.length > 1) {
      const ors: string[] = [];
      for (const f of filters) {
        const conds: Condition[] = [];
        for (const [k, v] of f) conds.push(await paramCondition(c, 'r', type, k, v));
        ors.push(anchorAsCondition(nestUnderReference(conds)).join(' AND ') || 'true');
      }
      where.conds.push(`((${ors.join(') OR (')}))`);
    }
    return { from: resourceSource(where), values: b.values };
  }

  /** A searchset Bundle for the query, over one type, several (`_type`) or all (`types` null). */
  async search(ctx: RequestContext, types: string[] | null, query: URLSearchParams, opts: SearchOptions): Promise<SearchResult> {
    const p = parseQuery(this.params, types, query, opts.strict ?? false);
    if (types === null && p.criteria.some(([k]) => !k.startsWith('_'))) {
      throw badRequest('A search across all types takes only the common parameters (_id, _lastUpdated, _tag, ...); name the types with _type.');
    }
    // A search that names its matches by id (a patient's, say) matches few resources, but
    // PostgreSQL underestimates how many links one patient has (hundreds, where its statistics say
    // ten), and for a short page (LIMIT 21) it then prefers walking hfj_resource in res_id order until
    // enough rows match: 70 ms instead of 1. Such searches collect their matches first (a
    // MATERIALIZED CTE), then order and page them; their SQL fixes the plan (nestUnderReference), so
    // they are planned once per shape.
    const anchored = !!opts.compartment || (types?.length === 1 && p.criteria.some(([k]) => namesMatchesById(this.params, types[0], k)));
    const db: Db = opts.client ?? (anchored ? this.fixedPool : this.pool);
    const b = new SqlBuilder();
    const c = this.context(ctx, b, db, opts.grants);
    // `FROM ${source}`: hfj_resource r and its conditions (WHERE ...; more may be ANDed on).
    let source = resourceSource(await this.where(c, types, p.criteria, opts.compartment));
    // The de-duplicated view: a record that is another's duplicate (the later of a link not rejected) is left out.
    if (p.dedup) source += ` AND ${dedupCondition(b, ctx)}`;
    // The parameters of `source` alone (counts run it without the ORDER BY's and paging's).
    const whereValues = [...b.values];
    const order = p.sort.length ? orderBy(this.params, b, types, p.sort) : null;
    const summaryCount = p.summary === 'count';
    const selfQuery = new URLSearchParams([...query].filter(([k]) => k !== '_page' && k !== '_snapshot' && k !== '_offset'));

    let page: StoredVersion[] = [];
    let total: number | undefined;
    const links: BundleLink[] = [{ relation: 'self', url: pageUrl(ctx, opts.path, query) }];
    const req: PageRequest = { db, repo: this.repo, ctx, b, source, whereValues, p, link: (extra) => pageUrl(ctx, opts.path, selfQuery, extra) };

    if (summaryCount) {
      total = await count(db, source, whereValues);
    } else {
      let result;
      if (order) {
        // The user is part of it: a snapshot answers only the user (or the app) that made it.
        const key = [ctx.ownerId, types, opts.compartment ?? null, p.criteria, p.sort, opts.grants?.map((g) => g.text).sort() ?? null, p.dedup];
        const hash = createHash('sha256').update(JSON.stringify(key)).digest('hex');
        result = await sortedPage(req, order, hash, this.expiry);
      } else result = await keysetPage(req, anchored);
      page = result.versions;
      total = result.total;
      links.push(...result.links);
    }

    const included = summaryCount
      ? { versions: [], truncated: false }
      : await this.included.includes(opts.client ?? this.fixedPool, ctx, p, page, opts.grants);
    if (included.truncated) p.warnings.push(warning(`More than ${MAX_INCLUDES} resources were to be included; the first ${MAX_INCLUDES} are.`));
    const head: Bundle = { resourceType: 'Bundle', type: 'searchset' };
    if (total !== undefined) head.total = total;
    head.link = links;
    let includes = included.versions;
    if (p.dedup) ({ page, included: includes } = await mergedView(db, this.repo, ctx, page, includes));
    const entries = [...page.map((v) => ({ v, mode: 'match' as const })), ...includes.map((v) => ({ v, mode: 'include' as const }))];
    return new SearchResult(ctx.baseUrl, head, entries, p.warnings, p.summary, p.elements);
  }
}
