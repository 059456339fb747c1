/**
 * The codes of a ValueSet stored in the partition, for token `:in` / `:not-in`: its expansion, or
 * its compose for listed codes and whole systems (imports followed, filters refused).
 * See: https://hl7.org/fhir/R4/search.html#token (`:in`)
 */
import type { ValueSet } from '@medplum/fhirtypes';
import { badRequest } from '../fhir/errors.ts';
import type { RequestContext } from '../fhir/ports.ts';
import { hapiHash } from '../storage/hash.ts';
import type { Db } from '../storage/repository.ts';
import type { ValueSetCodes } from './params/context.ts';
import { inScope } from './scope.ts';
import { SqlBuilder } from './sql-builder.ts';

/** The codes of a ValueSet stored in the partition (its expansion, or its compose for listed codes and whole systems). */
export async function valueSetCodes(db: Db, ctx: RequestContext, url: string, depth: number): Promise<ValueSetCodes | undefined> {
  if (depth > 4) throw badRequest(`ValueSet ${url} imports other ValueSets more than 4 deep.`);
  const b = new SqlBuilder();
  const { rows } = await db.query<{ json: string }>({
    text: `SELECT v.res_text_vc AS json FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver
        WHERE ${inScope(b, ctx, 'r')} AND r.res_type = 'ValueSet'
          AND r.res_id IN (SELECT x.res_id FROM hfj_spidx_uri x WHERE x.hash_uri = ${b.param(hapiHash(['ValueSet', 'url', url]).toString())}) LIMIT 1`,
    values: b.values,
  });
  if (!rows.length) return undefined;
  const vs = JSON.parse(rows[0].json) as ValueSet;
  const out: ValueSetCodes = { codes: [], systems: [] };
  const walk = (contains: NonNullable<ValueSet['expansion']>['contains']) => {
    for (const c of contains ?? []) {
      if (c.system && c.code) out.codes.push({ system: c.system, code: c.code });
      walk(c.contains);
    }
  };
  if (vs.expansion?.contains?.length) {
    walk(vs.expansion.contains);
    return out;
  }
  const excluded = new Set<string>();
  for (const ex of vs.compose?.exclude ?? []) for (const c of ex.concept ?? []) excluded.add(`${ex.system}|${c.code}`);
  for (const inc of vs.compose?.include ?? []) {
    if (inc.filter?.length)
      throw badRequest(
        `ValueSet ${url} selects codes with filters; :in and :not-in support ValueSets that list their codes or include whole code systems.`,
      );
    for (const imported of inc.valueSet ?? []) {
      const sub = await valueSetCodes(db, ctx, imported, depth + 1);
      if (!sub) throw badRequest(`ValueSet ${url} imports ${imported}, which is not stored on this server.`);
      out.codes.push(...sub.codes);
      out.systems.push(...sub.systems);
    }
    if (!inc.system) continue;
    if (inc.concept?.length) {
      for (const c of inc.concept) if (!excluded.has(`${inc.system}|${c.code}`)) out.codes.push({ system: inc.system, code: c.code });
    } else if (!inc.valueSet?.length) out.systems.push(inc.system);
  }
  return out;
}
