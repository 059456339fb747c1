/**
 * Number parameters over hfj_spidx_number, by prefix, with the value's implicit precision.
 * See: https://hl7.org/fhir/R4/search.html#number
 */
import { badRequest } from '../../fhir/errors.ts';
import type { IndexMatch } from '../sql-builder.ts';
import { parseNumber, prefixOf, splitBar, type Prefix } from '../values.ts';
import { h, inIndex, type ConditionContext } from './context.ts';

/** `x.sp_value` compared by prefix with a number (`text`), whose implicit precision is ± `half`. */
export function numberComparison(c: ConditionContext, prefix: Prefix, text: string, half: string): string {
  const v = `${c.b.param(text)}::numeric`;
  const halfOf = () => `${c.b.param(half)}::numeric`;
  const cmp: Record<Prefix, () => string> = {
    // eq, ne and ap take the value's implicit precision: 100 stands for [99.5, 100.5).
    eq: () => `x.sp_value >= ${v} - ${halfOf()} AND x.sp_value < ${v} + ${halfOf()}`,
    ne: () => `(x.sp_value < ${v} - ${halfOf()} OR x.sp_value >= ${v} + ${halfOf()})`,
    gt: () => `x.sp_value > ${v}`,
    lt: () => `x.sp_value < ${v}`,
    ge: () => `x.sp_value >= ${v}`,
    le: () => `x.sp_value <= ${v}`,
    sa: () => `x.sp_value > ${v}`,
    eb: () => `x.sp_value < ${v}`,
    ap: () => `x.sp_value BETWEEN ${v} - abs(${v}) * 0.1 - ${halfOf()} AND ${v} + abs(${v}) * 0.1 + ${halfOf()}`,
  };
  return cmp[prefix]();
}

export function numberCondition(c: ConditionContext, alias: string, type: string, code: string, values: string[]): IndexMatch {
  const ors: string[] = [];
  for (const raw of values) {
    const { prefix, value } = prefixOf(raw);
    const parts = splitBar(value);
    if (parts.length !== 1) throw badRequest(`"${raw}" is not a number.`);
    const n = parseNumber(parts[0], code);
    const identity = `x.hash_identity = ${c.b.param(h([type, code]))}`;
    ors.push(`(${identity} AND ${numberComparison(c, prefix, n.text, n.half)})`);
  }
  return inIndex(c, alias, type, 'hfj_spidx_number', ors.join(' OR '));
}
