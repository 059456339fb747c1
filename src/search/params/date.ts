/**
 * Date parameters over hfj_spidx_date: a stored range compared with the search value's range at its
 * precision, by prefix.
 * See: https://hl7.org/fhir/R4/search.html#date, #prefix
 */
import type { IndexMatch } from '../sql-builder.ts';
import { parseDate, prefixOf, type Prefix } from '../values.ts';
import { h, inIndex, type ConditionContext } from './context.ts';

export function dateCondition(c: ConditionContext, alias: string, type: string, code: string, values: string[]): IndexMatch {
  const ors = values.map((raw) => {
    const { prefix, value } = prefixOf(raw);
    const r = parseDate(value, code);
    return rangeComparison(c, prefix, 'x.sp_value_low', 'x.sp_value_high', r.low, r.high, true);
  });
  return inIndex(c, alias, type, 'hfj_spidx_date', `x.hash_identity = ${c.b.param(h([type, code]))} AND (${ors.join(' OR ')})`);
}

/** The spec's comparison of a stored range [lowCol, highCol] with a search range [lo, hi]. */
export function rangeComparison(
  c: ConditionContext,
  prefix: Prefix,
  lowCol: string,
  highCol: string,
  lo: number,
  hi: number,
  openEnds: boolean,
): string {
  // Parameters are made only when used: PostgreSQL refuses a statement with an unused one.
  const L = () => c.b.param(new Date(lo));
  const H = () => c.b.param(new Date(hi));
  // An open end (NULL) stands for -infinity (low) or +infinity (high).
  const lowOpen = openEnds ? ` OR ${lowCol} IS NULL` : '';
  const highOpen = openEnds ? ` OR ${highCol} IS NULL` : '';
  switch (prefix) {
    case 'eq':
      return `(${lowCol} >= ${L()} AND ${highCol} <= ${H()})`;
    case 'ne':
      return `(${lowCol} < ${L()} OR ${highCol} > ${H()}${lowOpen}${highOpen})`;
    case 'gt':
      return `(${highCol} > ${H()}${highOpen})`;
    case 'lt':
      return `(${lowCol} < ${L()}${lowOpen})`;
    case 'ge':
      // Above the search range, or within it (search.html#prefix).
      return `(${highCol} > ${H()}${highOpen} OR (${lowCol} >= ${L()} AND ${highCol} <= ${H()}))`;
    case 'le':
      // Below the search range, or within it.
      return `(${lowCol} < ${L()}${lowOpen} OR (${lowCol} >= ${L()} AND ${highCol} <= ${H()}))`;
    case 'sa':
      return `(${lowCol} > ${H()})`;
    case 'eb':
      return `(${highCol} < ${L()})`;
    case 'ap': {
      // Approximately: the ranges overlap once the search range is widened by 10% of its distance
      // from now (at least a day), as the spec suggests.
      const slack = Math.max(86_400_000, Math.abs(Date.now() - lo) * 0.1);
      const AL = c.b.param(new Date(lo - slack));
      const AH = c.b.param(new Date(hi + slack));
      return `((${lowCol} <= ${AH}${lowOpen}) AND (${highCol} >= ${AL}${highOpen}))`;
    }
  }
}
