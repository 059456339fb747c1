/**
 * The parameters of every type answered from hfj_resource, the tag tables and hfj_res_ver: `_id`,
 * `_lastUpdated`, `_tag`, `_security`, `_profile`, `_source`.
 * See: https://hl7.org/fhir/R4/search.html#all
 */
import { badRequest } from '../../fhir/errors.ts';
import { likeEscape } from '../../storage/sql.ts';
import { PROFILE } from '../../storage/meta.ts';
import { parseDate, prefixOf, splitBar, splitOr, unescape } from '../values.ts';
import type { ConditionContext } from './context.ts';
import { rangeComparison } from './date.ts';

export function idCondition(c: ConditionContext, alias: string, modifier: string, ids: string[]): string {
  if (modifier && modifier !== 'not') throw badRequest(`The modifier :${modifier} does not apply to _id.`);
  const cond = `${alias}.fhir_id = ANY(${c.b.param(ids)})`;
  return modifier === 'not' ? `NOT (${cond})` : cond;
}

export function lastUpdatedCondition(c: ConditionContext, alias: string, raw: string): string {
  const { prefix, value } = prefixOf(raw);
  const r = parseDate(value, '_lastUpdated');
  // res_updated is an instant: its range is one point.
  const col = `${alias}.res_updated`;
  return rangeComparison(c, prefix, col, col, r.low, r.high, false);
}

/** _tag and _security: token semantics over hfj_tag_def (system|code, |code, system|, code). */
export function tagCondition(c: ConditionContext, alias: string, tagType: number, modifier: string, rawValue: string): string {
  if (modifier && modifier !== 'not') throw badRequest(`The modifier :${modifier} is not supported on _tag and _security.`);
  const ors = splitOr(rawValue).map((v) => {
    const parts = splitBar(v);
    if (parts.length > 2) throw badRequest(`"${v}" is not a token (system|code).`);
    if (parts.length === 1) return `d.tag_code = ${c.b.param(parts[0])}`;
    const [system, code] = parts;
    if (system === '') return `(d.tag_system IS NULL AND d.tag_code = ${c.b.param(code)})`;
    if (code === '') return `d.tag_system = ${c.b.param(system)}`;
    return `(d.tag_system = ${c.b.param(system)} AND d.tag_code = ${c.b.param(code)})`;
  });
  return tagsIn(c, alias, tagType, ors.join(' OR '), modifier === 'not');
}

function tagsIn(c: ConditionContext, alias: string, tagType: number, defWhere: string, negate: boolean): string {
  // By owner too: the resource's tags are on its shard.
  return `(${alias}.res_id, ${alias}.owner_id) ${negate ? 'NOT IN' : 'IN'} (SELECT rt.res_id, rt.owner_id FROM hfj_res_tag rt WHERE rt.tag_id IN (
    SELECT d.tag_id FROM hfj_tag_def d WHERE d.tag_type = ${c.b.param(tagType)} AND (${defWhere})))`;
}

/** _profile: a canonical URL (uri semantics, `:below` for a version-less prefix). */
export function profileCondition(c: ConditionContext, alias: string, modifier: string, rawValue: string): string {
  if (modifier && modifier !== 'not' && modifier !== 'below') throw badRequest(`The modifier :${modifier} is not supported on _profile.`);
  const values = splitOr(rawValue).map(unescape);
  const where =
    modifier === 'below'
      ? values.map((v) => `d.tag_code LIKE ${c.b.param(`${likeEscape(v)}%`)}`).join(' OR ')
      : `d.tag_code = ANY(${c.b.param(values)})`;
  return tagsIn(c, alias, PROFILE, where, modifier === 'not');
}

/** _source: meta.source of the current version (HAPI keeps `uri#requestId`; either part matches). */
export function sourceCondition(c: ConditionContext, alias: string, modifier: string, rawValue: string): string {
  if (modifier && modifier !== 'not') throw badRequest(`The modifier :${modifier} is not supported on _source.`);
  const values = c.b.param(splitOr(rawValue).map(unescape));
  const cond = `EXISTS (SELECT 1 FROM hfj_res_ver sv WHERE sv.res_id = ${alias}.res_id AND sv.owner_id = ${alias}.owner_id AND sv.res_ver = ${alias}.res_ver
    AND (sv.source_uri = ANY(${values}) OR split_part(sv.source_uri, '#', 1) = ANY(${values})))`;
  return modifier === 'not' ? `NOT ${cond}` : cond;
}
