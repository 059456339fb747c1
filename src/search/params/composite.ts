/**
 * Composite parameters (`code-value-quantity=http://loinc.org|8480-6$gt100`): one condition per
 * component, each of its own type.
 * See: https://hl7.org/fhir/R4/search.html#composite
 */
import { badRequest } from '../../fhir/errors.ts';
import type { SearchParamInfo } from '../../fhir/ports.ts';
import type { Condition } from '../sql-builder.ts';
import { splitDollar } from '../values.ts';
import { typedCondition } from './condition.ts';
import type { ConditionContext } from './context.ts';

export function components(c: ConditionContext, type: string, sp: SearchParamInfo): SearchParamInfo[] {
  const comps = (sp.components ?? []).map((code) => c.params.get(type, code));
  if (!comps.length || comps.some((x) => !x)) throw badRequest(`The composite parameter ${sp.code} is not supported here.`);
  return comps as SearchParamInfo[];
}

/**
 * `code-value-quantity=http://loinc.org|8480-6$gt100`: each component's condition, all on the same
 * resource (as HAPI without unique combo indexes: the components are not tied to one element).
 */
export async function compositeCondition(
  c: ConditionContext,
  alias: string,
  type: string,
  sp: SearchParamInfo,
  value: string,
  depth: number,
): Promise<string> {
  const comps = components(c, type, sp);
  const parts = splitDollar(value);
  if (parts.length !== comps.length) throw badRequest(`${sp.code} takes ${comps.length} values joined by "$", not "${value}".`);
  const conds: Condition[] = [];
  for (let i = 0; i < comps.length; i++) {
    // Each component value is one value of its own type (a comma in it was escaped).
    conds.push(await typedCondition(c, alias, type, comps[i], '', parts[i], depth));
  }
  return `(${conds.join(' AND ')})`;
}
