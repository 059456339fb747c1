/**
 * Search parameters as SQL conditions over HAPI's index tables.
 *
 * Every condition is written over a resource alias (`hfj_resource <alias>`) and answered from an
 * index: `alias.res_id IN (SELECT res_id FROM hfj_spidx_... WHERE <hash> = ...)`, which PostgreSQL
 * turns into a semi-join it can drive from either side. The OR values of one parameter share one
 * subquery (`hash = ANY($n)`); repeated parameters AND their conditions. Chains and `_has` nest the
 * same conditions over another alias of hfj_resource, always inside the request's partition.
 * Values only ever reach the SQL as parameters ($n).
 * See: https://hl7.org/fhir/R4/search.html
 */
import { hapiHash, normalizeString } from '../storage/hash.ts';
import { HASH_PREFIX_LENGTH } from '../indexing/rows.ts';
import { likeEscape } from '../storage/sql.ts';
import { PROFILE, SECURITY, TAG } from '../storage/meta.ts';
import { badRequest, fhirError } from '../fhir/errors.ts';
import { allowed, missingSearchScope, type ResourceScope } from '../auth/scopes.ts';
import { DIRECTORY_SCOPE, DIRECTORY_TYPES, type Scope, type SearchParamInfo, type SearchParamLookup } from '../fhir/ports.ts';
import { isResourceType } from '../fhir/resource-type.ts';
import { canonicalUnit, scaled, UCUM_SYSTEM } from '../indexing/ucum.ts';
import type { SqlBuilder } from './sql-builder.ts';
import { parseDate, parseNumber, prefixOf, splitBar, splitDollar, splitOr, unescape, type Prefix } from './values.ts';

const h = (values: (string | null)[]): string => hapiHash(values).toString();

/** Chains and `_has` nest at most this deep (each level is a join). */
export const MAX_DEPTH = 8;


/** Code system values of a ValueSet, for `:in` / `:not-in`. */
export interface ValueSetCodes {
  /** system|code pairs listed one by one. */
  codes: { system: string; code: string }[];
  /** Systems included whole. */
  systems: string[];
}

export interface ConditionContext {
  b: SqlBuilder;
  params: SearchParamLookup;
  /** The request's partition and user, applied to every hfj_resource alias. */
  scope: Scope;
  /** The FHIR base URL of this server: absolute references under it are local. */
  baseUrl: string;
  /** The codes of a ValueSet stored in the scope, by canonical URL; undefined when there is none. */
  valueSet(url: string): Promise<ValueSetCodes | undefined>;
  /**
   * The token's SMART scopes: what the search may return or look at, type by type, with their v2
   * query filters (see grantCondition). Absent: every type (app credentials, FHIR_AUTH=off).
   */
  grants?: ResourceScope[];
}

const forbidden = (msg: string) => fhirError(403, 'forbidden', msg);

/**
 * SQL for "the alias is a resource the token's scopes let a search see": of a type granted for
 * search (`s`), and, where a type is granted only through v2 query filters
 * (`patient/Observation.rs?category=laboratory`), matching one of them. `types`: the types the
 * alias may be (null: any). A filter that cannot be applied (a parameter the type does not have,
 * or any type's parameter across all types) is a 403 naming the scope: never a silent widening.
 * See: https://build.fhir.org/ig/HL7/smart-app-launch/scopes-and-launch-context.html#finer-grained-resource-constraints-using-search-parameters
 */
export async function grantCondition(c: ConditionContext, alias: string, types: readonly string[] | null): Promise<string> {
  if (!c.grants) return 'true';
  const granting = c.grants.filter((s) => s.interactions.has('s'));
  if (granting.some((s) => s.type === '*' && !s.filter.length)) return 'true';
  const reachable = (t: string) => !types || types.includes(t);
  const plain = [...new Set(granting.filter((s) => s.type !== '*' && !s.filter.length && reachable(s.type)).map((s) => s.type))];
  const ors = plain.length ? [`${alias}.res_type = ANY(${c.b.param(plain)}::text[])`] : [];
  // The filters are conditions of the token, not of the user: they are not narrowed by the grants again.
  const bare: ConditionContext = { ...c, grants: undefined };
  for (const s of granting.filter((x) => x.filter.length)) {
    const common = s.filter.every(([k]) => (COMMON_PARAMS as readonly string[]).includes(parseKey(k).code));
    if (s.type === '*' && !types && common) {
      ors.push(`(${(await Promise.all(s.filter.map(([k, v]) => paramCondition(bare, alias, '*', k, v)))).join(' AND ')})`);
      continue;
    }
    if (s.type === '*' && !types) throw forbidden(`The scope ${s.text} filters by parameters of each type, which cannot be applied to a search across all types; name the types with _type.`);
    for (const t of s.type === '*' ? types! : [s.type]) {
      if (!reachable(t) || plain.includes(t)) continue;
      for (const [k] of s.filter) {
        const code = parseKey(k).code;
        if (!(COMMON_PARAMS as readonly string[]).includes(code) && !c.params.get(t, code)) {
          throw forbidden(`The scope ${s.text} filters ${t} by "${code}", which ${t} has no search parameter for: the filter cannot be applied, so ${t} cannot be returned.`);
        }
      }
      const conds = await Promise.all(s.filter.map(([k, v]) => paramCondition(bare, alias, t, k, v)));
      ors.push(`(${alias}.res_type = ${c.b.param(t)} AND ${conds.join(' AND ')})`);
    }
  }
  return ors.length ? `(${ors.join(' OR ')})` : 'false';
}

/** The types of `types` that the token may search at all (filters aside); all of them without grants. */
function searchable(c: ConditionContext, types: string[]): string[] {
  return c.grants ? types.filter((t) => allowed(c.grants!, 's', t) !== 'denied') : types;
}

/** Parameters that apply to every type and are answered from hfj_resource, the tag tables or hfj_res_ver. */
export const COMMON_PARAMS = ['_id', '_lastUpdated', '_tag', '_profile', '_security', '_source', '_has'] as const;

/** Result-shaping parameters: not conditions. */
export const CONTROL_PARAMS = new Set([
  '_count', '_sort', '_format', '_pretty', '_summary', '_elements', '_total', '_include', '_revinclude', '_type', '_page', '_snapshot', '_offset',
]);

/** SQL for "the alias is a live resource of the scope". */
export function scoped(c: ConditionContext, alias: string, types?: readonly string[]): string {
  return inScope(c.b, c.scope, alias, types);
}

/**
 * `alias` (an hfj_resource) is a live resource of the scope: its partition and, when the scope
 * names a user, that user's. When the alias may be one of `types` and one of those is a directory
 * type (Organization, Endpoint), the directory's partition is in reach too, for every app. Every
 * hfj_resource a search reads goes through here.
 */
export function inScope(b: SqlBuilder, scope: Scope, alias: string, types: readonly string[] = []): string {
  const owner =
    scope.ownerId === null
      ? ''
      : scope.withUnowned
        ? ` AND (${alias}.owner_id = ${b.param(scope.ownerId)} OR ${alias}.owner_id IS NULL)`
        : ` AND ${alias}.owner_id = ${b.param(scope.ownerId)}`;
  const own = `${alias}.partition_id = ${b.param(scope.partitionId)}${owner}`;
  const shared = types.filter((t) => DIRECTORY_TYPES.includes(t));
  // Partitions below 0 are no app's (-1: a request without access; -2: the directory itself).
  if (!shared.length || scope.partitionId < 0 || scope.ownOnly) return `${own} AND ${alias}.res_deleted_at IS NULL`;
  const directory = `${alias}.partition_id = ${DIRECTORY_SCOPE.partitionId} AND ${alias}.res_type = ANY(${b.param(shared)}::text[])`;
  return `(${own} OR ${directory}) AND ${alias}.res_deleted_at IS NULL`;
}

interface Key {
  code: string;
  modifier: string;
  /** The rest of a chained key after the first `.`, e.g. `organization.name` of `patient.organization.name`. */
  chain: string | null;
}

function parseKey(key: string): Key {
  const dot = key.indexOf('.');
  const head = dot < 0 ? key : key.slice(0, dot);
  const colon = head.indexOf(':');
  return {
    code: colon < 0 ? head : head.slice(0, colon),
    modifier: colon < 0 ? '' : head.slice(colon + 1),
    chain: dot < 0 ? null : key.slice(dot + 1),
  };
}

/**
 * Whether `key` names its matches by id: `_id`, or a reference parameter given ids (`patient=123`,
 * `subject:Patient=Patient/123`), not a chain or a modifier that widens it. Such a search matches a
 * few resources of a known owner (SearchEngine.search plans those differently).
 */
export function namesMatchesById(params: SearchParamLookup, type: string, key: string): boolean {
  if (key.startsWith('_has:')) return false;
  const k = parseKey(key);
  if (k.chain !== null) return false;
  if (k.code === '_id') return k.modifier === '';
  const sp = params.get(type, k.code);
  return sp?.type === 'reference' && (k.modifier === '' || isResourceType(k.modifier));
}

/** The condition of one query parameter (`key=value`) on `alias`, a resource of `type`. */
export async function paramCondition(c: ConditionContext, alias: string, type: string, key: string, rawValue: string, depth = 0): Promise<string> {
  if (depth > MAX_DEPTH) throw badRequest(`Chains and _has nest at most ${MAX_DEPTH} levels deep.`);
  if (key.startsWith('_has:')) return hasCondition(c, alias, type, key, rawValue, depth);
  const k = parseKey(key);
  if (rawValue === '' && k.modifier !== 'missing') throw badRequest(`Parameter ${key} has an empty value.`);
  if (k.chain !== null) return chainCondition(c, alias, type, k, rawValue, depth);
  if (k.modifier === 'missing') return missingCondition(c, alias, type, k.code, rawValue);
  switch (k.code) {
    case '_id':
      return idCondition(c, alias, k.modifier, splitOr(rawValue).map(unescape));
    case '_lastUpdated':
      return orOf(splitOr(rawValue).map((v) => lastUpdatedCondition(c, alias, v)));
    case '_tag':
      return tagCondition(c, alias, TAG, k.modifier, rawValue);
    case '_security':
      return tagCondition(c, alias, SECURITY, k.modifier, rawValue);
    case '_profile':
      return profileCondition(c, alias, k.modifier, rawValue);
    case '_source':
      return sourceCondition(c, alias, k.modifier, rawValue);
  }
  const sp = lookup(c, type, k.code);
  return typedCondition(c, alias, type, sp, k.modifier, rawValue, depth);
}

function lookup(c: ConditionContext, type: string, code: string): SearchParamInfo {
  const sp = c.params.get(type, code);
  if (!sp) throw badRequest(`${type} has no search parameter "${code}".`);
  return sp;
}

function orOf(conds: string[]): string {
  return conds.length === 1 ? conds[0] : `(${conds.join(' OR ')})`;
}

async function typedCondition(c: ConditionContext, alias: string, type: string, sp: SearchParamInfo, modifier: string, rawValue: string, depth: number): Promise<string> {
  // An empty alternative (`name=smith,`) asks for nothing: it is dropped, not taken as "any value".
  const values = splitOr(rawValue).filter((v) => v !== '');
  if (!values.length) throw badRequest(`Parameter ${sp.code} has only empty values.`);
  switch (sp.type) {
    case 'token':
      return tokenCondition(c, alias, type, sp.code, modifier, values);
    case 'string':
      return stringCondition(c, alias, type, sp.code, modifier, values);
    case 'uri':
      return uriCondition(c, alias, type, sp.code, modifier, values);
    case 'date':
      noModifier(sp, modifier);
      return dateCondition(c, alias, type, sp.code, values);
    case 'number':
      noModifier(sp, modifier);
      return numberCondition(c, alias, type, sp.code, values, 'hfj_spidx_number');
    case 'quantity':
      noModifier(sp, modifier);
      return numberCondition(c, alias, type, sp.code, values, 'hfj_spidx_quantity');
    case 'reference':
      return referenceCondition(c, alias, type, sp, modifier, values);
    case 'composite':
      noModifier(sp, modifier);
      return orOf(await Promise.all(values.map((v) => compositeCondition(c, alias, type, sp, v, depth))));
    default:
      throw badRequest(`Searching by ${sp.type} parameters such as "${sp.code}" is not supported.`);
  }
}

function noModifier(sp: SearchParamInfo, modifier: string): void {
  if (modifier) throw badRequest(`The modifier :${modifier} does not apply to ${sp.type} parameters such as ${sp.code}.`);
}

/**
 * `alias.res_id [NOT] IN (SELECT x.res_id FROM <table> x WHERE ...)`: the shape nestUnderReference
 * relies on. For a user's search, the user's own rows only (ownedRows).
 */
function inIndex(c: ConditionContext, alias: string, type: string, table: string, where: string, negate = false): string {
  const own = ownedRows(c, type, 'x');
  return `${alias}.res_id ${negate ? 'NOT IN' : 'IN'} (SELECT x.res_id FROM ${table} x WHERE ${own ? `${own} AND (${where})` : where})`;
}

/**
 * `x.owner_id = <user>` when every resource of `type` the scope reaches is the scope user's own (a
 * user's search, where the type is not one the directory shares): index rows carry their
 * resource's owner, second in each index after the hash, so the search reads the user's rows and
 * no one else's. Empty otherwise (an app's search over all its users, FHIR_AUTH=off).
 */
export function ownedRows(c: ConditionContext, type: string, x: string): string {
  const s = c.scope;
  if (s.ownerId === null || s.withUnowned) return '';
  if (DIRECTORY_TYPES.includes(type) && !s.ownOnly && s.partitionId >= 0) return '';
  return `${x}.owner_id = ${c.b.param(s.ownerId)}`;
}

// ---------------------------------------------------------------------------------------------
// _id, _lastUpdated, tags, source

function idCondition(c: ConditionContext, alias: string, modifier: string, ids: string[]): string {
  if (modifier && modifier !== 'not') throw badRequest(`The modifier :${modifier} does not apply to _id.`);
  const cond = `${alias}.fhir_id = ANY(${c.b.param(ids)})`;
  return modifier === 'not' ? `NOT (${cond})` : cond;
}

function lastUpdatedCondition(c: ConditionContext, alias: string, raw: string): string {
  const { prefix, value } = prefixOf(raw);
  const r = parseDate(value, '_lastUpdated');
  // res_updated is an instant: its range is one point.
  const col = `${alias}.res_updated`;
  return rangeComparison(c, prefix, col, col, r.low, r.high, false);
}

/** The spec's comparison of a stored range [lowCol, highCol] with a search range [lo, hi]. */
function rangeComparison(c: ConditionContext, prefix: Prefix, lowCol: string, highCol: string, lo: number, hi: number, openEnds: boolean): string {
  // Parameters are made only when used: PostgreSQL refuses a statement with an unused one.
  const L = () => c.b.param(new Date(lo));
  const H = () => c.b.param(new Date(hi));
  // An open end (NULL) stands for -infinity (low) or +infinity (high).
  const lowOpen = openEnds ? ` OR ${lowCol} IS NULL` : '';
  const highOpen = openEnds ? ` OR ${highCol} IS NULL` : '';
  switch (prefix) {
    case 'eq':
      return `(${lowCol} >= ${L()} AND ${highCol} <= ${H()})`;
    case 'ne':
      return `(${lowCol} < ${L()} OR ${highCol} > ${H()}${lowOpen}${highOpen})`;
    case 'gt':
      return `(${highCol} > ${H()}${highOpen})`;
    case 'lt':
      return `(${lowCol} < ${L()}${lowOpen})`;
    case 'ge':
      // Above the search range, or within it (search.html#prefix).
      return `(${highCol} > ${H()}${highOpen} OR (${lowCol} >= ${L()} AND ${highCol} <= ${H()}))`;
    case 'le':
      // Below the search range, or within it.
      return `(${lowCol} < ${L()}${lowOpen} OR (${lowCol} >= ${L()} AND ${highCol} <= ${H()}))`;
    case 'sa':
      return `(${lowCol} > ${H()})`;
    case 'eb':
      return `(${highCol} < ${L()})`;
    case 'ap': {
      // Approximately: the ranges overlap once the search range is widened by 10% of its distance
      // from now (at least a day), as the spec suggests.
      const slack = Math.max(86_400_000, Math.abs(Date.now() - lo) * 0.1);
      const AL = c.b.param(new Date(lo - slack));
      const AH = c.b.param(new Date(hi + slack));
      return `((${lowCol} <= ${AH}${lowOpen}) AND (${highCol} >= ${AL}${highOpen}))`;
    }
  }
}

/** _tag and _security: token semantics over hfj_tag_def (system|code, |code, system|, code). */
function tagCondition(c: ConditionContext, alias: string, tagType: number, modifier: string, rawValue: string): string {
  if (modifier && modifier !== 'not') throw badRequest(`The modifier :${modifier} is not supported on _tag and _security.`);
  const ors = splitOr(rawValue).map((v) => {
    const parts = splitBar(v);
    if (parts.length > 2) throw badRequest(`"${v}" is not a token (system|code).`);
    if (parts.length === 1) return `d.tag_code = ${c.b.param(parts[0])}`;
    const [system, code] = parts;
    if (system === '') return `(d.tag_system IS NULL AND d.tag_code = ${c.b.param(code)})`;
    if (code === '') return `d.tag_system = ${c.b.param(system)}`;
    return `(d.tag_system = ${c.b.param(system)} AND d.tag_code = ${c.b.param(code)})`;
  });
  return tagsIn(c, alias, tagType, ors.join(' OR '), modifier === 'not');
}

function tagsIn(c: ConditionContext, alias: string, tagType: number, defWhere: string, negate: boolean): string {
  return `${alias}.res_id ${negate ? 'NOT IN' : 'IN'} (SELECT rt.res_id FROM hfj_res_tag rt WHERE rt.tag_id IN (
    SELECT d.tag_id FROM hfj_tag_def d WHERE d.tag_type = ${c.b.param(tagType)} AND (${defWhere})))`;
}

/** _profile: a canonical URL (uri semantics, `:below` for a version-less prefix). */
function profileCondition(c: ConditionContext, alias: string, modifier: string, rawValue: string): string {
  if (modifier && modifier !== 'not' && modifier !== 'below') throw badRequest(`The modifier :${modifier} is not supported on _profile.`);
  const values = splitOr(rawValue).map(unescape);
  const where =
    modifier === 'below'
      ? values.map((v) => `d.tag_code LIKE ${c.b.param(`${likeEscape(v)}%`)}`).join(' OR ')
      : `d.tag_code = ANY(${c.b.param(values)})`;
  return tagsIn(c, alias, PROFILE, where, modifier === 'not');
}

/** _source: meta.source of the current version (HAPI keeps `uri#requestId`; either part matches). */
function sourceCondition(c: ConditionContext, alias: string, modifier: string, rawValue: string): string {
  if (modifier && modifier !== 'not') throw badRequest(`The modifier :${modifier} is not supported on _source.`);
  const values = c.b.param(splitOr(rawValue).map(unescape));
  const cond = `EXISTS (SELECT 1 FROM hfj_res_ver sv WHERE sv.res_id = ${alias}.res_id AND sv.res_ver = ${alias}.res_ver
    AND (sv.source_uri = ANY(${values}) OR split_part(sv.source_uri, '#', 1) = ANY(${values})))`;
  return modifier === 'not' ? `NOT ${cond}` : cond;
}

// ---------------------------------------------------------------------------------------------
// :missing

function missingCondition(c: ConditionContext, alias: string, type: string, code: string, rawValue: string): string {
  if (rawValue !== 'true' && rawValue !== 'false') throw badRequest(`${code}:missing takes true or false, not "${rawValue}".`);
  const missing = rawValue === 'true';
  let exists: string;
  switch (code) {
    case '_id':
    case '_lastUpdated':
      return missing ? 'false' : 'true';
    case '_tag':
    case '_security':
    case '_profile': {
      const tagType = code === '_tag' ? TAG : code === '_security' ? SECURITY : PROFILE;
      exists = `EXISTS (SELECT 1 FROM hfj_res_tag rt JOIN hfj_tag_def d ON d.tag_id = rt.tag_id WHERE rt.res_id = ${alias}.res_id AND d.tag_type = ${c.b.param(tagType)})`;
      break;
    }
    case '_source':
      exists = `EXISTS (SELECT 1 FROM hfj_res_ver sv WHERE sv.res_id = ${alias}.res_id AND sv.res_ver = ${alias}.res_ver AND sv.source_uri IS NOT NULL)`;
      break;
    default: {
      const sp = lookup(c, type, code);
      if (sp.type === 'reference') {
        exists = `EXISTS (SELECT 1 FROM hfj_res_link l WHERE l.src_resource_id = ${alias}.res_id AND l.src_path = ANY(${c.b.param(sp.paths)})${targetFilter(c.b, sp, true)})`;
      } else if (sp.type === 'composite') {
        const comps = components(c, type, sp);
        exists = comps.map((p) => `EXISTS (SELECT 1 FROM ${TABLE[p.type]} x WHERE x.res_id = ${alias}.res_id AND x.hash_identity = ${c.b.param(h([type, p.code]))})`).join(' AND ');
      } else {
        const table = TABLE[sp.type];
        if (!table) throw badRequest(`:missing is not supported on ${sp.type} parameters such as ${code}.`);
        exists = `EXISTS (SELECT 1 FROM ${table} x WHERE x.res_id = ${alias}.res_id AND x.hash_identity = ${c.b.param(h([type, code]))})`;
      }
    }
  }
  return missing ? `NOT (${exists})` : exists;
}

/** The index table of each parameter type. */
export const TABLE: Record<string, string> = {
  string: 'hfj_spidx_string',
  token: 'hfj_spidx_token',
  date: 'hfj_spidx_date',
  number: 'hfj_spidx_number',
  quantity: 'hfj_spidx_quantity',
  uri: 'hfj_spidx_uri',
};

// ---------------------------------------------------------------------------------------------
// token

async function tokenCondition(c: ConditionContext, alias: string, type: string, code: string, modifier: string, values: string[]): Promise<string> {
  switch (modifier) {
    case '':
    case 'not':
      return inIndex(c, alias, type, 'hfj_spidx_token', tokenRows(c, type, code, values), modifier === 'not');
    case 'text':
      return stringRows(c, alias, type, code, values.map(unescape), 'text');
    case 'of-type':
      return orOf(values.map((v) => ofTypeCondition(c, alias, type, code, v)));
    case 'in':
    case 'not-in': {
      const where: string[] = [];
      for (const url of values.map(unescape)) {
        const vs = await c.valueSet(url);
        if (!vs) throw badRequest(`No ValueSet with url "${url}" is stored on this server; create it first to search with :${modifier}.`);
        const sys = vs.codes.map((x) => h([type, code, x.system, x.code]));
        if (sys.length) where.push(`x.hash_sys_and_value = ANY(${c.b.param(sys)}::bigint[])`);
        if (vs.systems.length) where.push(`x.hash_sys = ANY(${c.b.param(vs.systems.map((s) => h([type, code, s])))}::bigint[])`);
      }
      if (!where.length) return modifier === 'in' ? 'false' : 'true';
      return inIndex(c, alias, type, 'hfj_spidx_token', where.join(' OR '), modifier === 'not-in');
    }
    default:
      throw badRequest(`The modifier :${modifier} is not supported on token parameters such as ${code}.`);
  }
}

/** The index-row condition (over `x`, hfj_spidx_token) matching any of the token values. */
function tokenRows(c: ConditionContext, type: string, code: string, values: string[]): string {
  const byValue: string[] = [];
  const bySysValue: string[] = [];
  const bySys: string[] = [];
  const noSystem: string[] = [];
  for (const v of values) {
    const parts = splitBar(v);
    if (parts.length > 2) throw badRequest(`The token "${v}" of parameter ${code} has more than one "|"; escape a literal bar as \\|.`);
    if (parts.length === 1) byValue.push(h([type, code, parts[0]]));
    else if (parts[0] === '') noSystem.push(parts[1]);
    else if (parts[1] === '') bySys.push(h([type, code, parts[0]]));
    else bySysValue.push(h([type, code, parts[0], parts[1]]));
  }
  const ors: string[] = [];
  if (byValue.length) ors.push(`x.hash_value = ANY(${c.b.param(byValue)}::bigint[])`);
  if (bySysValue.length) ors.push(`x.hash_sys_and_value = ANY(${c.b.param(bySysValue)}::bigint[])`);
  if (bySys.length) ors.push(`x.hash_sys = ANY(${c.b.param(bySys)}::bigint[])`);
  if (noSystem.length) {
    // A code without a system: the value hash narrows it, the missing system decides.
    ors.push(`(x.hash_value = ANY(${c.b.param(noSystem.map((v) => h([type, code, v])))}::bigint[]) AND x.sp_system IS NULL)`);
  }
  return ors.length === 1 ? ors[0] : `(${ors.join(' OR ')})`;
}

/**
 * `identifier:of-type=system|code|value`: the identifier's value from the index, its type checked in
 * the stored JSON of the current version (HAPI indexes no identifier type).
 */
function ofTypeCondition(c: ConditionContext, alias: string, type: string, code: string, v: string): string {
  const parts = splitBar(v);
  if (parts.length !== 3 || parts.some((p) => p === '')) throw badRequest(`${code}:of-type takes system|code|value, not "${v}".`);
  const [system, typeCode, value] = parts;
  const sp = lookup(c, type, code);
  const elements = [...new Set(sp.paths.map((p) => p.split('.')[1]).filter((e) => /^[a-zA-Z]+$/.test(e ?? '')))];
  if (!elements.length) throw badRequest(`${code}:of-type is not supported here.`);
  const S = c.b.param(system);
  const C = c.b.param(typeCode);
  const V = c.b.param(value);
  const inJson = elements
    .map(
      (el) => `EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(sv.res_text_vc::jsonb -> ${c.b.param(el)}) = 'array' THEN sv.res_text_vc::jsonb -> ${c.b.param(el)} ELSE '[]'::jsonb END) i
        WHERE i ->> 'value' = ${V} AND EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(i -> 'type' -> 'coding', '[]'::jsonb)) tc WHERE tc ->> 'system' = ${S} AND tc ->> 'code' = ${C}))`,
    )
    .join(' OR ');
  return `(${inIndex(c, alias, type, 'hfj_spidx_token', `x.hash_value = ${c.b.param(h([type, code, value]))}`)}
    AND EXISTS (SELECT 1 FROM hfj_res_ver sv WHERE sv.res_id = ${alias}.res_id AND sv.res_ver = ${alias}.res_ver AND (${inJson})))`;
}

// ---------------------------------------------------------------------------------------------
// string

function stringCondition(c: ConditionContext, alias: string, type: string, code: string, modifier: string, values: string[]): string {
  if (modifier && modifier !== 'exact' && modifier !== 'contains') {
    throw badRequest(`The modifier :${modifier} is not supported on string parameters such as ${code}.`);
  }
  return stringRows(c, alias, type, code, values.map(unescape), modifier || 'prefix');
}

/** A string index match: prefix (normalized, the default), exact, contains, or `text` (token :text rows). */
function stringRows(c: ConditionContext, alias: string, type: string, name: string, values: string[], mode: string): string {
  if (mode === 'exact') return inIndex(c, alias, type, 'hfj_spidx_string', `x.hash_exact = ANY(${c.b.param(values.map((v) => h([type, name, v])))}::bigint[])`);
  const ors = values.map((v) => {
    const normalized = normalizeString(v);
    if (mode === 'contains' || normalized.length < HASH_PREFIX_LENGTH) {
      return `(x.hash_identity = ${c.b.param(h([type, name]))} AND x.sp_value_normalized LIKE ${c.b.param(`%${likeEscape(normalized)}%`)})`;
    }
    // HAPI's hash_norm_prefix hashes the first HASH_PREFIX_LENGTH characters of the normalized value.
    const prefix = h([type, name, normalized.slice(0, HASH_PREFIX_LENGTH)]);
    return `(x.hash_norm_prefix = ${c.b.param(prefix)} AND x.sp_value_normalized LIKE ${c.b.param(`${likeEscape(normalized)}%`)})`;
  });
  if (mode === 'text') {
    // Token :text matches a word start of the text or display, not only the start of the whole text.
    const words = values.map((v) => `(x.hash_identity = ${c.b.param(h([type, name]))} AND x.sp_value_normalized LIKE ${c.b.param(`% ${likeEscape(normalizeString(v))}%`)})`);
    ors.push(...words);
  }
  return inIndex(c, alias, type, 'hfj_spidx_string', ors.join(' OR '));
}

// ---------------------------------------------------------------------------------------------
// uri

function uriCondition(c: ConditionContext, alias: string, type: string, code: string, modifier: string, values: string[]): string {
  const uris = values.map(unescape);
  switch (modifier) {
    case '':
    case 'not':
      return inIndex(c, alias, type, 'hfj_spidx_uri', `x.hash_uri = ANY(${c.b.param(uris.map((u) => h([type, code, u])))}::bigint[])`, modifier === 'not');
    case 'below':
      return inIndex(
        c,
        alias,
        type,
        'hfj_spidx_uri',
        `x.hash_identity = ${c.b.param(h([type, code]))} AND (${uris.map((u) => `x.sp_uri LIKE ${c.b.param(`${likeEscape(u)}%`)}`).join(' OR ')})`,
      );
    case 'above': {
      // Stored URIs of which the search value is an extension: every prefix of it that ends at a "/".
      const prefixes = new Set<string>();
      for (const u of uris) {
        prefixes.add(u);
        for (let i = u.indexOf('//') + 2; i > 1 && i < u.length; i++) if (u[i] === '/') prefixes.add(u.slice(0, i));
      }
      return inIndex(c, alias, type, 'hfj_spidx_uri', `x.hash_uri = ANY(${c.b.param([...prefixes].map((u) => h([type, code, u])))}::bigint[])`);
    }
    default:
      throw badRequest(`The modifier :${modifier} is not supported on uri parameters such as ${code}.`);
  }
}

// ---------------------------------------------------------------------------------------------
// date, number, quantity

function dateCondition(c: ConditionContext, alias: string, type: string, code: string, values: string[]): string {
  const ors = values.map((raw) => {
    const { prefix, value } = prefixOf(raw);
    const r = parseDate(value, code);
    return rangeComparison(c, prefix, 'x.sp_value_low', 'x.sp_value_high', r.low, r.high, true);
  });
  return inIndex(c, alias, type, 'hfj_spidx_date', `x.hash_identity = ${c.b.param(h([type, code]))} AND (${ors.join(' OR ')})`);
}

function numberCondition(c: ConditionContext, alias: string, type: string, code: string, values: string[], table: string): string {
  const quantity = table === 'hfj_spidx_quantity';
  const byTable = new Map<string, string[]>();
  for (const raw of values) {
    const { prefix, value } = prefixOf(raw);
    const parts = splitBar(value);
    if (parts.length !== 1 && (parts.length !== 3 || !quantity)) throw badRequest(`"${raw}" is not a ${quantity ? 'quantity (value|system|code)' : 'number'}.`);
    const n = parseNumber(parts[0], code);
    const [, system, unit] = parts;
    if (system && !unit) throw badRequest(`The quantity "${raw}" names a system without a unit code.`);
    // A UCUM quantity is compared in canonical units (hfj_spidx_quantity_nrml): 1 kg finds 1000 g.
    const canonical = system === UCUM_SYSTEM && unit ? canonicalUnit(unit) : null;
    let target = table;
    let identity: string;
    let text = n.text;
    let half = n.half;
    if (canonical) {
      target = 'hfj_spidx_quantity_nrml';
      identity = `x.hash_identity_sys_units = ${c.b.param(h([type, code, system, canonical.unit]))}`;
      text = scaled(n.text, canonical.factor);
      half = scaled(n.half, canonical.factor);
    } else if (system && unit) identity = `x.hash_identity_sys_units = ${c.b.param(h([type, code, system, unit]))}`;
    else if (unit) identity = `x.hash_identity_and_units = ${c.b.param(h([type, code, unit]))}`;
    else identity = `x.hash_identity = ${c.b.param(h([type, code]))}`;
    const v = `${c.b.param(text)}::numeric`;
    const halfOf = () => `${c.b.param(half)}::numeric`;
    const cmp: Record<Prefix, () => string> = {
      // eq, ne and ap take the value's implicit precision: 100 stands for [99.5, 100.5).
      eq: () => `x.sp_value >= ${v} - ${halfOf()} AND x.sp_value < ${v} + ${halfOf()}`,
      ne: () => `(x.sp_value < ${v} - ${halfOf()} OR x.sp_value >= ${v} + ${halfOf()})`,
      gt: () => `x.sp_value > ${v}`,
      lt: () => `x.sp_value < ${v}`,
      ge: () => `x.sp_value >= ${v}`,
      le: () => `x.sp_value <= ${v}`,
      sa: () => `x.sp_value > ${v}`,
      eb: () => `x.sp_value < ${v}`,
      ap: () => `x.sp_value BETWEEN ${v} - abs(${v}) * 0.1 - ${halfOf()} AND ${v} + abs(${v}) * 0.1 + ${halfOf()}`,
    };
    const list = byTable.get(target) ?? [];
    list.push(`(${identity} AND ${cmp[prefix]()})`);
    byTable.set(target, list);
  }
  return orOf([...byTable].map(([t, ors]) => inIndex(c, alias, type, t, ors.join(' OR '))));
}

// ---------------------------------------------------------------------------------------------
// reference, chains, _has

/** AND l.target_resource_type = ... for a parameter restricted to some target types. */
export function targetFilter(b: SqlBuilder, sp: SearchParamInfo, withUrls: boolean): string {
  const targets = sp.targets ?? [];
  if (!targets.length || targets.includes('Resource')) return '';
  // `patient` shares Observation.subject with `subject`: only links to its target types are its own.
  const types = `l.target_resource_type = ANY(${b.param(targets)})`;
  return withUrls ? ` AND (${types} OR l.target_resource_url IS NOT NULL)` : ` AND ${types}`;
}

const REF_RE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/;

function referenceCondition(c: ConditionContext, alias: string, type: string, sp: SearchParamInfo, modifier: string, values: string[]): string {
  if (modifier === 'identifier') return identifierReference(c, alias, type, sp, values);
  let typeModifier: string | null = null;
  if (modifier && modifier !== 'not') {
    if (!isResourceType(modifier)) throw badRequest(`The modifier :${modifier} is not supported on reference parameters such as ${sp.code}.`);
    typeModifier = modifier;
  }
  const ors = values.map(unescape).map((raw) => {
    let ref = raw;
    const local = `${c.baseUrl}/`;
    if (ref.startsWith(local)) ref = ref.slice(local.length);
    const m = REF_RE.exec(ref);
    if (m) {
      if (typeModifier && m[1] !== typeModifier) return 'false';
      return `(l.target_resource_type = ${c.b.param(m[1])} AND l.target_fhir_id = ${c.b.param(m[2])})`;
    }
    if (/^[a-z][a-z0-9+.-]*:/i.test(ref)) return `l.target_resource_url = ${c.b.param(ref)}`;
    if (!/^[A-Za-z0-9\-.]{1,64}$/.test(ref)) throw badRequest(`"${raw}" is not a reference: write an id, Type/id or an absolute URL.`);
    const typeCond = typeModifier ? ` AND l.target_resource_type = ${c.b.param(typeModifier)}` : targetFilter(c.b, sp, false);
    return `(l.target_fhir_id = ${c.b.param(ref)}${typeCond})`;
  });
  const own = ownedRows(c, type, 'l');
  const links = `${LINK_SOURCES}l.src_path = ANY(${c.b.param(sp.paths)})${own ? ` AND ${own}` : ''} AND (${ors.join(' OR ')}))`;
  return modifier === 'not' ? `${alias}.res_id NOT IN ${links}` : `${alias}.res_id IN ${links}`;
}

/** The start of a reference's link subquery (nestUnderReference finds it by this text). */
const LINK_SOURCES = '(SELECT l.src_resource_id FROM hfj_res_link l WHERE ';

/**
 * `patient=X&code=Y` over `r`. The reference names one patient's links, a few hundred resources
 * created together and so close in res_id. Each other index condition (the inIndex shape) is
 * narrowed to them: `x.res_id = ANY(ARRAY(links))` over the index on (hash, res_id) reads the few
 * leaf pages that hold those ids in one descent (PostgreSQL 17 and later walk a sorted ANY array
 * along the index), where probing the index once per link read three pages a link: 20 pages instead
 * of 1,100 for a patient with 400 observations. The reference condition itself is then implied and
 * left out.
 *
 * The search is then anchored on those ids: the first such condition (or the links themselves,
 * when there is none) becomes the ids the search starts from (resourceSource), an array computed
 * first and read by primary key. PostgreSQL does not find this plan itself, as it cannot tell how few links one
 * target has; and before it has statistics (a store just loaded, not yet analyzed) it walked every
 * resource of the type and probed the index for each: 20-40 ms instead of 2 on 7,454 resources.
 * Works on the SQL text of referenceCondition and inIndex above.
 */
export function nestUnderReference(conds: string[]): Anchored {
  const driver = conds.findIndex((x) => x.startsWith(`r.res_id IN ${LINK_SOURCES}`));
  if (driver < 0) return { ids: null, conds };
  const links = `ARRAY${conds[driver].slice('r.res_id IN '.length)}`;
  const head = /^r\.res_id IN \(SELECT x\.res_id FROM \w+ x WHERE /;
  let ids: string | null = null;
  const rest: string[] = [];
  conds.forEach((x, i) => {
    if (i === driver) return;
    const m = head.exec(x);
    if (!m) {
      rest.push(x);
      return;
    }
    const select = `SELECT x.res_id FROM ${m[0].slice('r.res_id IN (SELECT x.res_id FROM '.length)}x.res_id = ANY(${links}) AND (${x.slice(m[0].length, -1)})`;
    if (ids === null) ids = `ARRAY(${select})`;
    else rest.push(`r.res_id IN (${select})`);
  });
  return { ids: ids ?? links, conds: rest };
}

/** A search's conditions over `r`, and the ids it is anchored on (an `ARRAY(...)` of res_ids), if any. */
export interface Anchored {
  ids: string | null;
  conds: string[];
}

/** The anchor as one more condition, where it cannot drive the search (inside an OR of types). */
export function anchorAsCondition(a: Anchored): string[] {
  return a.ids === null ? a.conds : [`r.res_id = ANY(${a.ids})`, ...a.conds];
}

/**
 * What a search over `r` reads: `hfj_resource r WHERE <conds>`; or, for a search anchored on ids
 * (nestUnderReference), those ids first and each resource by primary key, `r` being the result of
 * a LATERAL lookup per id that PostgreSQL cannot turn into a scan of the type (OFFSET 0 keeps it a
 * lookup), whatever its statistics say: without them (a store just loaded) it estimated a type's
 * resources at one row and walked them all instead.
 */
export function resourceSource(a: Anchored): string {
  if (a.ids === null) return `hfj_resource r WHERE ${a.conds.join(' AND ')}`;
  return `(SELECT DISTINCT unnest(${a.ids}) AS res_id) anchor CROSS JOIN LATERAL (SELECT * FROM hfj_resource r WHERE r.res_id = anchor.res_id OFFSET 0) r WHERE ${a.conds.length ? a.conds.join(' AND ') : 'true'}`;
}

/**
 * `alias` is in `Patient/{id}`'s compartment through one of `params` (reference parameters of its
 * type): one link condition over all their paths, which nestUnderReference anchors on as it does
 * on `patient=`, where an OR of one per parameter could not be.
 */
export function compartmentCondition(c: ConditionContext, alias: string, type: string, params: SearchParamInfo[], id: string): string {
  const paths = [...new Set(params.flatMap((sp) => sp.paths))];
  if (!paths.length) return 'false';
  const own = ownedRows(c, type, 'l');
  return `${alias}.res_id IN ${LINK_SOURCES}l.src_path = ANY(${c.b.param(paths)})${own ? ` AND ${own}` : ''} AND l.target_resource_type = 'Patient' AND l.target_fhir_id = ${c.b.param(id)})`;
}

/** The types a chain through `sp` may reach: the type modifier, or the targets that know the next parameter. */
function chainTargets(c: ConditionContext, sp: SearchParamInfo, typeModifier: string, nextCode: string): string[] {
  if (typeModifier) {
    if (!isResourceType(typeModifier)) throw badRequest(`"${typeModifier}" is not a resource type.`);
    return [typeModifier];
  }
  const targets = (sp.targets ?? []).filter((t) => isResourceType(t));
  const known = targets.filter((t) => nextCode.startsWith('_') || c.params.get(t, nextCode));
  if (!known.length) throw badRequest(`No target type of ${sp.code} has a search parameter "${nextCode}"; name the type as ${sp.code}:Type.${nextCode}.`);
  return known;
}

/** `subject:Patient.name=x`: the reference's target, joined in the scope, matches the rest of the chain. */
async function chainCondition(c: ConditionContext, alias: string, type: string, k: Key, rawValue: string, depth: number): Promise<string> {
  const sp = lookup(c, type, k.code);
  if (sp.type !== 'reference') throw badRequest(`Only reference parameters can be chained; ${k.code} is a ${sp.type} parameter.`);
  const nextKey = k.chain as string;
  const nextCode = parseKey(nextKey).code;
  const candidates = chainTargets(c, sp, k.modifier, nextCode);
  // A chain looks at its targets: only through types the token may search, filters applied.
  const types = searchable(c, candidates);
  if (!types.length) throw forbidden(missingSearchScope(candidates[0], `the chain ${k.code}${k.modifier ? `:${k.modifier}` : ''}.${nextKey}`));
  const t = c.b.alias('t');
  const perType: string[] = [];
  for (const target of types) {
    perType.push(`(${t}.res_type = ${c.b.param(target)} AND ${await paramCondition(c, t, target, nextKey, rawValue, depth + 1)})`);
  }
  const granted = await grantCondition(c, t, types);
  return throughTargets(c, alias, sp, t, types, `l.target_resource_type = ANY(${c.b.param(types)}) AND (${perType.join(' OR ')})${granted === 'true' ? '' : ` AND ${granted}`}`);
}

/** `alias` has a link through `sp` to a live resource `t` (one of `types`) of the scope for which `where` holds. */
function throughTargets(c: ConditionContext, alias: string, sp: SearchParamInfo, t: string, types: readonly string[], where: string): string {
  return `${alias}.res_id IN (SELECT l.src_resource_id FROM hfj_res_link l JOIN hfj_resource ${t}
      ON ${t}.res_type = l.target_resource_type AND ${t}.fhir_id = l.target_fhir_id AND ${scoped(c, t, types)}
    WHERE l.src_path = ANY(${c.b.param(sp.paths)}) AND ${where})`;
}

/**
 * `subject:identifier=system|value`: the reference's own identifier (a logical reference, indexed as
 * the token `subject:identifier`), or the identifier of the resource it points at.
 */
function identifierReference(c: ConditionContext, alias: string, type: string, sp: SearchParamInfo, values: string[]): string {
  const logical = inIndex(c, alias, type, 'hfj_spidx_token', tokenRows(c, type, `${sp.code}:identifier`, values));
  // The targets' own identifiers only of types the token may search whole (this condition is built
  // without the filters' SQL); the reference's logical identifier is the source's own data.
  const types = (sp.targets ?? []).filter((t) => isResourceType(t) && c.params.get(t, 'identifier') && (!c.grants || allowed(c.grants, 's', t) === 'all'));
  if (!types.length) return logical;
  const t = c.b.alias('t');
  const perType = types.map((target) => `(${t}.res_type = ${c.b.param(target)} AND ${inIndex(c, t, target, 'hfj_spidx_token', tokenRows(c, target, 'identifier', values))})`);
  return `(${logical} OR ${throughTargets(c, alias, sp, t, types, `(${perType.join(' OR ')})`)})`;
}

/** `_has:Observation:patient:code=x`: some Observation whose `patient` points here matches `code=x`. */
async function hasCondition(c: ConditionContext, alias: string, type: string, key: string, rawValue: string, depth: number): Promise<string> {
  const parts = key.split(':');
  if (parts.length < 4) throw badRequest(`"${key}" is not a reverse chain; write _has:Type:reference-parameter:parameter=value.`);
  const [, srcType, refCode, ...rest] = parts;
  if (!isResourceType(srcType)) throw badRequest(`"${srcType}" in ${key} is not a resource type.`);
  if (type === '*') throw badRequest('_has needs a resource type to search ([type]?_has:...).');
  const ref = lookup(c, srcType, refCode);
  if (ref.type !== 'reference') throw badRequest(`${srcType}.${refCode} is not a reference parameter.`);
  if (!searchable(c, [srcType]).length) throw forbidden(missingSearchScope(srcType, key));
  const o = c.b.alias('o');
  const inner = await paramCondition(c, o, srcType, rest.join(':'), rawValue, depth + 1);
  const granted = await grantCondition(c, o, [srcType]);
  return `${alias}.fhir_id IN (SELECT l.target_fhir_id FROM hfj_res_link l JOIN hfj_resource ${o} ON ${o}.res_id = l.src_resource_id
    WHERE l.src_path = ANY(${c.b.param(ref.paths)}) AND l.target_resource_type = ${c.b.param(type)} AND ${o}.res_type = ${c.b.param(srcType)}
      AND ${scoped(c, o, [srcType])} AND ${inner}${granted === 'true' ? '' : ` AND ${granted}`})`;
}

// ---------------------------------------------------------------------------------------------
// composite

function components(c: ConditionContext, type: string, sp: SearchParamInfo): SearchParamInfo[] {
  const comps = (sp.components ?? []).map((code) => c.params.get(type, code));
  if (!comps.length || comps.some((x) => !x)) throw badRequest(`The composite parameter ${sp.code} is not supported here.`);
  return comps as SearchParamInfo[];
}

/**
 * `code-value-quantity=http://loinc.org|8480-6$gt100`: each component's condition, all on the same
 * resource (as HAPI without unique combo indexes: the components are not tied to one element).
 */
async function compositeCondition(c: ConditionContext, alias: string, type: string, sp: SearchParamInfo, value: string, depth: number): Promise<string> {
  const comps = components(c, type, sp);
  const parts = splitDollar(value);
  if (parts.length !== comps.length) throw badRequest(`${sp.code} takes ${comps.length} values joined by "$", not "${value}".`);
  const conds: string[] = [];
  for (let i = 0; i < comps.length; i++) {
    // Each component value is one value of its own type (a comma in it was escaped).
    conds.push(await typedCondition(c, alias, type, comps[i], '', parts[i], depth));
  }
  return `(${conds.join(' AND ')})`;
}
