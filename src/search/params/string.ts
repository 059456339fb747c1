/**
 * String parameters over hfj_spidx_string: a normalized prefix by default, :exact and :contains
 * (and the word starts token :text looks for).
 * See: https://hl7.org/fhir/R4/search.html#string
 */
import { badRequest } from '../../fhir/errors.ts';
import { normalizeString } from '../../storage/hash.ts';
import { likeEscape } from '../../storage/sql.ts';
import { HASH_PREFIX_LENGTH } from '../../indexing/rows.ts';
import type { IndexMatch } from '../sql-builder.ts';
import { unescape } from '../values.ts';
import { h, inIndex, type ConditionContext } from './context.ts';

export function stringCondition(c: ConditionContext, alias: string, type: string, code: string, modifier: string, values: string[]): IndexMatch {
  if (modifier && modifier !== 'exact' && modifier !== 'contains') {
    throw badRequest(`The modifier :${modifier} is not supported on string parameters such as ${code}.`);
  }
  return stringRows(c, alias, type, code, values.map(unescape), modifier || 'prefix');
}

/** A string index match: prefix (normalized, the default), exact, contains, or `text` (token :text rows). */
export function stringRows(c: ConditionContext, alias: string, type: string, name: string, values: string[], mode: string): IndexMatch {
  if (mode === 'exact')
    return inIndex(c, alias, type, 'hfj_spidx_string', `x.hash_exact = ANY(${c.b.param(values.map((v) => h([type, name, v])))}::bigint[])`);
  const ors = values.map((v) => {
    const normalized = normalizeString(v);
    if (mode === 'contains' || normalized.length < HASH_PREFIX_LENGTH) {
      return `(x.hash_identity = ${c.b.param(h([type, name]))} AND x.sp_value_normalized LIKE ${c.b.param(`%${likeEscape(normalized)}%`)})`;
    }
    // HAPI's hash_norm_prefix hashes the first HASH_PREFIX_LENGTH characters of the normalized value.
    const prefix = h([type, name, normalized.slice(0, HASH_PREFIX_LENGTH)]);
    return `(x.hash_norm_prefix = ${c.b.param(prefix)} AND x.sp_value_normalized LIKE ${c.b.param(`${likeEscape(normalized)}%`)})`;
  });
  if (mode === 'text') {
    // Token :text matches a word start of the text or display, not only the start of the whole text.
    const words = values.map(
      (v) => `(x.hash_identity = ${c.b.param(h([type, name]))} AND x.sp_value_normalized LIKE ${c.b.param(`% ${likeEscape(normalizeString(v))}%`)})`,
    );
    ors.push(...words);
  }
  return inIndex(c, alias, type, 'hfj_spidx_string', ors.join(' OR '));
}
