/**
 * Reverse chains (`_has:Observation:patient:code=x`): some resource whose reference points here
 * matches the rest.
 * See: https://hl7.org/fhir/R4/search.html#has
 */
import { badRequest } from '../../fhir/errors.ts';
import { missingSearchScope } from '../../auth/scopes.ts';
import { isResourceType } from '../../fhir/resource-type.ts';
import { grantCondition, searchable } from '../grants.ts';
import { scoped } from '../scope.ts';
import { paramCondition } from './condition.ts';
import { forbidden, lookup, ownedRows, type ConditionContext } from './context.ts';

/** `_has:Observation:patient:code=x`: some Observation whose `patient` points here matches `code=x`. */
export async function hasCondition(c: ConditionContext, alias: string, type: string, key: string, rawValue: string, depth: number): Promise<string> {
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
  const own = ownedRows(c, srcType, 'l');
  return `${alias}.fhir_id IN (SELECT l.target_fhir_id FROM hfj_res_link l JOIN hfj_resource ${o} ON ${o}.res_id = l.src_resource_id AND ${o}.owner_id = l.owner_id
    WHERE l.src_path = ANY(${c.b.param(ref.paths)})${own ? ` AND ${own}` : ''} AND l.target_resource_type = ${c.b.param(type)} AND ${o}.res_type = ${c.b.param(srcType)}
      AND ${scoped(c, o, [srcType])} AND ${inner}${granted === 'true' ? '' : ` AND ${granted}`})`;
}
