/**
 * Search parameters as SQL conditions over HAPI's index tables: one query parameter (`key=value`)
 * to the module of its parameter's type.
 *
 * Every condition is written over a resource alias (`hfj_resource <alias>`) and answered from an
 * index: `alias.res_id IN (SELECT res_id FROM hfj_spidx_... WHERE <hash> = ...)`, which PostgreSQL
 * turns into a semi-join it can drive from either side. The OR values of one parameter share one
 * subquery (`hash = ANY($n)`); repeated parameters AND their conditions. Chains and `_has` nest the
 * same conditions over another alias of hfj_resource, always inside the request's partition.
 * Values only ever reach the SQL as parameters ($n).
 * See: https://hl7.org/fhir/R4/search.html
 */
import { badRequest } from '../../fhir/errors.ts';
import type { SearchParamInfo, SearchParamLookup } from '../../fhir/ports.ts';
import { isResourceType } from '../../fhir/resource-type.ts';
import { PROFILE, SECURITY, TAG } from '../../storage/meta.ts';
import type { Condition } from '../sql-builder.ts';
import { splitOr, unescape } from '../values.ts';
import { chainCondition } from './chain.ts';
import { idCondition, lastUpdatedCondition, profileCondition, sourceCondition, tagCondition } from './common.ts';
import { compositeCondition } from './composite.ts';
import { lookup, MAX_DEPTH, noModifier, orOf, type ConditionContext } from './context.ts';
import { dateCondition } from './date.ts';
import { hasCondition } from './has.ts';
import { parseKey } from './key.ts';
import { missingCondition } from './missing.ts';
import { numberCondition } from './number.ts';
import { quantityCondition } from './quantity.ts';
import { referenceCondition } from './reference.ts';
import { stringCondition } from './string.ts';
import { tokenCondition } from './token.ts';
import { uriCondition } from './uri.ts';

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
export async function paramCondition(c: ConditionContext, alias: string, type: string, key: string, rawValue: string, depth = 0): Promise<Condition> {
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

/** The condition of a value of `sp` by the parameter's type. */
export async function typedCondition(
  c: ConditionContext,
  alias: string,
  type: string,
  sp: SearchParamInfo,
  modifier: string,
  rawValue: string,
  depth: number,
): Promise<Condition> {
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
      return numberCondition(c, alias, type, sp.code, values);
    case 'quantity':
      noModifier(sp, modifier);
      return quantityCondition(c, alias, type, sp.code, values);
    case 'reference':
      return referenceCondition(c, alias, type, sp, modifier, values);
    case 'composite':
      noModifier(sp, modifier);
      return orOf(await Promise.all(values.map((v) => compositeCondition(c, alias, type, sp, v, depth))));
    default:
      throw badRequest(`Searching by ${sp.type} parameters such as "${sp.code}" is not supported.`);
  }
}
