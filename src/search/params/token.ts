/**
 * Token parameters over hfj_spidx_token: `code`, `system|code`, `|code`, `system|`, and the
 * modifiers :not, :text, :of-type, :in and :not-in.
 * See: https://hl7.org/fhir/R4/search.html#token
 */
import { badRequest } from '../../fhir/errors.ts';
import type { Condition } from '../sql-builder.ts';
import { splitBar, unescape } from '../values.ts';
import { h, inIndex, lookup, orOf, type ConditionContext } from './context.ts';
import { stringRows } from './string.ts';

export async function tokenCondition(
  c: ConditionContext,
  alias: string,
  type: string,
  code: string,
  modifier: string,
  values: string[],
): Promise<Condition> {
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
export function tokenRows(c: ConditionContext, type: string, code: string, values: string[]): string {
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
      (
        el,
      ) => `EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(sv.res_text_vc::jsonb -> ${c.b.param(el)}) = 'array' THEN sv.res_text_vc::jsonb -> ${c.b.param(el)} ELSE '[]'::jsonb END) i
        WHERE i ->> 'value' = ${V} AND EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(i -> 'type' -> 'coding', '[]'::jsonb)) tc WHERE tc ->> 'system' = ${S} AND tc ->> 'code' = ${C}))`,
    )
    .join(' OR ');
  return `(${inIndex(c, alias, type, 'hfj_spidx_token', `x.hash_value = ${c.b.param(h([type, code, value]))}`)}
    AND EXISTS (SELECT 1 FROM hfj_res_ver sv WHERE sv.res_id = ${alias}.res_id AND sv.owner_id = ${alias}.owner_id AND sv.res_ver = ${alias}.res_ver AND (${inJson})))`;
}
