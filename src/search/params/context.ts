/**
 * What every parameter module shares: the context a condition is built in, and the index-table
 * subquery most conditions are (`alias.res_id IN (SELECT x.res_id FROM hfj_spidx_... x WHERE ...)`).
 */
import { hapiHash } from '../../storage/hash.ts';
import { badRequest, fhirError } from '../../fhir/errors.ts';
import type { ResourceScope } from '../../auth/scopes.ts';
import { ownerKey } from '../../storage/distribution.ts';
import { DIRECTORY_SCOPE, DIRECTORY_TYPES, type RequestContext, type Scope, type SearchParamInfo, type SearchParamLookup } from '../../fhir/ports.ts';
import type { Db } from '../../storage/repository.ts';
import { IndexMatch, type Condition, type SqlBuilder } from '../sql-builder.ts';
import { valueSetCodes } from '../valueset.ts';

export const h = (values: (string | null)[]): string => hapiHash(values).toString();

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

export const forbidden = (msg: string) => fhirError(403, 'forbidden', msg);

/** The index table of each parameter type. */
export const TABLE: Record<string, string> = {
  string: 'hfj_spidx_string',
  token: 'hfj_spidx_token',
  date: 'hfj_spidx_date',
  number: 'hfj_spidx_number',
  quantity: 'hfj_spidx_quantity',
  uri: 'hfj_spidx_uri',
};

export function lookup(c: ConditionContext, type: string, code: string): SearchParamInfo {
  const sp = c.params.get(type, code);
  if (!sp) throw badRequest(`${type} has no search parameter "${code}".`);
  return sp;
}

export function orOf(conds: Condition[]): Condition {
  return conds.length === 1 ? conds[0] : `(${conds.join(' OR ')})`;
}

export function noModifier(sp: SearchParamInfo, modifier: string): void {
  if (modifier) throw badRequest(`The modifier :${modifier} does not apply to ${sp.type} parameters such as ${sp.code}.`);
}

/**
 * `alias.res_id [NOT] IN (SELECT x.res_id FROM <table> x WHERE ...)`: the shape nestUnderReference
 * relies on. For a user's search, the user's own rows only (ownedRows).
 */
export function inIndex(c: ConditionContext, alias: string, type: string, table: string, where: string, negate = false): IndexMatch {
  const own = ownedRows(c, type, 'x');
  return new IndexMatch(alias, table, own ? `${own} AND (${where})` : where, negate);
}

/**
 * The rows (over `x`, an index or link table) of the resources of `type` the scope reaches, by
 * their owner: `x.owner_id = <user>` for a user's search, with the app's own records' key too when
 * the scope takes them in, and the directory's for a type it shares (Organization, Endpoint). Index
 * rows carry their resource's owner (the distribution key), second in each index after the hash:
 * the search reads those owners' rows and no one else's, on Citus those owners' shards. Empty for
 * a scope of the whole app (an app's search over all its users, FHIR_AUTH=off).
 */
export function ownedRows(c: ConditionContext, type: string, x: string): string {
  return ownersOf(c.b, x, reachKeys(c.scope, [type]));
}

/** `x.owner_id` is one of `keys` (empty: no condition, every owner). */
export function ownersOf(b: SqlBuilder, x: string, keys: string[] | null): string {
  if (!keys) return '';
  return keys.length === 1 ? `${x}.owner_id = ${b.param(keys[0])}` : `${x}.owner_id = ANY(${b.param(keys)}::bigint[])`;
}

/**
 * The distribution keys of the records of `types` a scope reaches, or null for every key (a scope
 * of the whole app): the user's, the app's own records' (withUnowned) and the directory's when one
 * of the types is the directory's.
 */
export function reachKeys(s: Scope, types: readonly string[]): string[] | null {
  if (s.ownerId === null) return null;
  const keys = [s.ownerId];
  if (s.withUnowned) keys.push(ownerKey(s.partitionId, null));
  if (types.some((t) => t === '*' || DIRECTORY_TYPES.includes(t)) && !s.ownOnly && s.partitionId >= 0)
    keys.push(ownerKey(DIRECTORY_SCOPE.partitionId, null));
  return keys;
}

/** The context of a request's conditions, built on `b`; ValueSets (for `:in`) read on `db`. */
export function conditionContext(params: SearchParamLookup, ctx: RequestContext, b: SqlBuilder, db: Db, grants?: ResourceScope[]): ConditionContext {
  return {
    grants,
    b,
    params,
    scope: ctx,
    baseUrl: ctx.baseUrl,
    valueSet: (url) => valueSetCodes(db, ctx, url, 0),
  };
}
