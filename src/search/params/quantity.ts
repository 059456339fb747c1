/**
 * Quantity parameters over hfj_spidx_quantity (`value`, `value||unit`, `value|system|unit`); a UCUM
 * quantity is compared in canonical units over hfj_spidx_quantity_nrml.
 * See: https://hl7.org/fhir/R4/search.html#quantity
 */
import { badRequest } from '../../fhir/errors.ts';
import { canonicalUnit, scaled, UCUM_SYSTEM } from '../../indexing/ucum.ts';
import type { Condition } from '../sql-builder.ts';
import { parseNumber, prefixOf, splitBar } from '../values.ts';
import { h, inIndex, orOf, type ConditionContext } from './context.ts';
import { numberComparison } from './number.ts';

export function quantityCondition(c: ConditionContext, alias: string, type: string, code: string, values: string[]): Condition {
  const table = 'hfj_spidx_quantity';
  const byTable = new Map<string, string[]>();
  for (const raw of values) {
    const { prefix, value } = prefixOf(raw);
    const parts = splitBar(value);
    if (parts.length !== 1 && parts.length !== 3) throw badRequest(`"${raw}" is not a quantity (value|system|code).`);
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
    const list = byTable.get(target) ?? [];
    list.push(`(${identity} AND ${numberComparison(c, prefix, text, half)})`);
    byTable.set(target, list);
  }
  return orOf([...byTable].map(([t, ors]) => inIndex(c, alias, type, t, ors.join(' OR '))));
}
