/**
 * Reference parameters over hfj_res_link: `id`, `Type/id`, an absolute URL, the type modifier,
 * :not and :identifier; and the Patient compartment as one link condition.
 * See: https://hl7.org/fhir/R4/search.html#reference
 */
import { badRequest } from '../../fhir/errors.ts';
import { allowed } from '../../auth/scopes.ts';
import type { SearchParamInfo } from '../../fhir/ports.ts';
import { isResourceType } from '../../fhir/resource-type.ts';
import { LinkMatch, type Condition, type SqlBuilder } from '../sql-builder.ts';
import { scoped } from '../scope.ts';
import { unescape } from '../values.ts';
import { inIndex, ownedRows, type ConditionContext } from './context.ts';
import { tokenRows } from './token.ts';

/** AND l.target_resource_type = ... for a parameter restricted to some target types. */
export function targetFilter(b: SqlBuilder, sp: SearchParamInfo, withUrls: boolean): string {
  const targets = sp.targets ?? [];
  if (!targets.length || targets.includes('Resource')) return '';
  // `patient` shares Observation.subject with `subject`: only links to its target types are its own.
  const types = `l.target_resource_type = ANY(${b.param(targets)})`;
  return withUrls ? ` AND (${types} OR l.target_resource_url IS NOT NULL)` : ` AND ${types}`;
}

const REF_RE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/;

export function referenceCondition(
  c: ConditionContext,
  alias: string,
  type: string,
  sp: SearchParamInfo,
  modifier: string,
  values: string[],
): Condition {
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
  return new LinkMatch(alias, c.b.param(sp.paths), own, `(${ors.join(' OR ')})`, modifier === 'not');
}

/**
 * `alias` is in `Patient/{id}`'s compartment through one of `params` (reference parameters of its
 * type): one link condition over all their paths, which nestUnderReference anchors on as it does
 * on `patient=`, where an OR of one per parameter could not be.
 */
export function compartmentCondition(c: ConditionContext, alias: string, type: string, params: SearchParamInfo[], id: string): Condition {
  const paths = [...new Set(params.flatMap((sp) => sp.paths))];
  if (!paths.length) return 'false';
  const own = ownedRows(c, type, 'l');
  return new LinkMatch(alias, c.b.param(paths), own, `l.target_resource_type = 'Patient' AND l.target_fhir_id = ${c.b.param(id)}`, false);
}

/** `alias` has a link through `sp` to a live resource `t` (one of `types`) of the scope for which `where` holds. */
export function throughTargets(
  c: ConditionContext,
  alias: string,
  type: string,
  sp: SearchParamInfo,
  t: string,
  types: readonly string[],
  where: string,
): string {
  const own = ownedRows(c, type, 'l');
  return `${alias}.res_id IN (SELECT l.src_resource_id FROM hfj_res_link l JOIN hfj_resource ${t}
      ON ${t}.res_type = l.target_resource_type AND ${t}.fhir_id = l.target_fhir_id AND ${scoped(c, t, types)}
    WHERE l.src_path = ANY(${c.b.param(sp.paths)})${own ? ` AND ${own}` : ''} AND ${where})`;
}

/**
 * `subject:identifier=system|value`: the reference's own identifier (a logical reference, indexed as
 * the token `subject:identifier`), or the identifier of the resource it points at.
 */
function identifierReference(c: ConditionContext, alias: string, type: string, sp: SearchParamInfo, values: string[]): Condition {
  const logical = inIndex(c, alias, type, 'hfj_spidx_token', tokenRows(c, type, `${sp.code}:identifier`, values));
  // The targets' own identifiers only of types the token may search whole (this condition is built
  // without the filters' SQL); the reference's logical identifier is the source's own data.
  const types = (sp.targets ?? []).filter(
    (t) => isResourceType(t) && c.params.get(t, 'identifier') && (!c.grants || allowed(c.grants, 's', t) === 'all'),
  );
  if (!types.length) return logical;
  const t = c.b.alias('t');
  const perType = types.map(
    (target) => `(${t}.res_type = ${c.b.param(target)} AND ${inIndex(c, t, target, 'hfj_spidx_token', tokenRows(c, target, 'identifier', values))})`,
  );
  return `(${logical} OR ${throughTargets(c, alias, type, sp, t, types, `(${perType.join(' OR ')})`)})`;
}
