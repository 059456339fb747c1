/** The token's SMART scopes as search conditions: what a search may return or look at. */
import { allowed } from '../auth/scopes.ts';
import { COMMON_PARAMS, parseKey } from './params/key.ts';
import { forbidden, type ConditionContext } from './params/context.ts';
import { paramCondition } from './params/condition.ts';

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
    if (s.type === '*' && !types)
      throw forbidden(
        `The scope ${s.text} filters by parameters of each type, which cannot be applied to a search across all types; name the types with _type.`,
      );
    for (const t of s.type === '*' ? types! : [s.type]) {
      if (!reachable(t) || plain.includes(t)) continue;
      for (const [k] of s.filter) {
        const code = parseKey(k).code;
        if (!(COMMON_PARAMS as readonly string[]).includes(code) && !c.params.get(t, code)) {
          throw forbidden(
            `The scope ${s.text} filters ${t} by "${code}", which ${t} has no search parameter for: the filter cannot be applied, so ${t} cannot be returned.`,
          );
        }
      }
      const conds = await Promise.all(s.filter.map(([k, v]) => paramCondition(bare, alias, t, k, v)));
      ors.push(`(${alias}.res_type = ${c.b.param(t)} AND ${conds.join(' AND ')})`);
    }
  }
  return ors.length ? `(${ors.join(' OR ')})` : 'false';
}

/** The types of `types` that the token may search at all (filters aside); all of them without grants. */
export function searchable(c: ConditionContext, types: string[]): string[] {
  return c.grants ? types.filter((t) => allowed(c.grants!, 's', t) !== 'denied') : types;
}
