/**
 * Chained parameters (`subject:Patient.name=x`): the reference's target, joined in the scope,
 * matches the rest of the chain.
 * See: https://hl7.org/fhir/R4/search.html#chaining
 */
import { badRequest } from '../../fhir/errors.ts';
import { missingSearchScope } from '../../auth/scopes.ts';
import type { SearchParamInfo } from '../../fhir/ports.ts';
import { isResourceType } from '../../fhir/resource-type.ts';
import { grantCondition, searchable } from '../grants.ts';
import { paramCondition } from './condition.ts';
import { forbidden, lookup, type ConditionContext } from './context.ts';
import { parseKey, type Key } from './key.ts';
import { throughTargets } from './reference.ts';

/** The types a chain through `sp` may reach: the type modifier, or the targets that know the next parameter. */
function chainTargets(c: ConditionContext, sp: SearchParamInfo, typeModifier: string, nextCode: string): string[] {
  if (typeModifier) {
    if (!isResourceType(typeModifier)) throw badRequest(`"${typeModifier}" is not a resource type.`);
    return [typeModifier];
  }
  const targets = (sp.targets ?? []).filter((t) => isResourceType(t));
  const known = targets.filter((t) => nextCode.startsWith('_') || c.params.get(t, nextCode));
  if (!known.length)
    throw badRequest(`No target type of ${sp.code} has a search parameter "${nextCode}"; name the type as ${sp.code}:Type.${nextCode}.`);
  return known;
}

/** `subject:Patient.name=x`: the reference's target, joined in the scope, matches the rest of the chain. */
export async function chainCondition(c: ConditionContext, alias: string, type: string, k: Key, rawValue: string, depth: number): Promise<string> {
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
  return throughTargets(
    c,
    alias,
    type,
    sp,
    t,
    types,
    `l.target_resource_type = ANY(${c.b.param(types)}) AND (${perType.join(' OR ')})${granted === 'true' ? '' : ` AND ${granted}`}`,
  );
}
