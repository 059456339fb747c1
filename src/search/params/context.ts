/**
 * What every parameter module shares: the context a condition is built in, and the index-table
 * subquery most conditions are (`alias.res_id IN (SELECT x.res_id FROM hfj_spidx_... x WHERE ...)`).
 */
import { hapiHash } from '../../storage/hash.ts';
import { badRequest, fhirError } from '../../fhir/errors.ts';
import type { ResourceScope } from '../../auth/scopes.ts';
import { DIRECTORY_TYPES, type RequestContext, type Scope, type SearchParamInfo, type SearchParamLookup } from '../../fhir/ports.ts';
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
