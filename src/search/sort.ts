/** `_sort`: the ORDER BY of a sorted search. See: https://hl7.org/fhir/R4/search.html#sort */
import { badRequest } from '../fhir/errors.ts';
import type { SearchParamInfo, SearchParamLookup } from '../fhir/ports.ts';
import { hapiHash } from '../storage/hash.ts';
import type { SortKey } from './parse.ts';
import { TABLE } from './params/context.ts';
import type { SqlBuilder } from './sql-builder.ts';

/** ORDER BY over `r` for the sort keys, ties broken by res_id. */
export function orderBy(params: SearchParamLookup, b: SqlBuilder, types: string[] | null, keys: SortKey[]): string {
  const parts: string[] = [];
  for (const { code, desc } of keys) {
    const dir = desc ? 'DESC NULLS LAST' : 'ASC NULLS LAST';
    if (code === '_id') parts.push(`r.fhir_id ${dir}`);
    else if (code === '_lastUpdated') parts.push(`r.res_updated ${dir}`);
    else {
      if (!types || types.length !== 1)
        throw badRequest(`_sort=${code.slice(0, 100)} needs one resource type; across types only _id and _lastUpdated sort.`);
      const type = types[0];
      const sp = params.get(type, code);
      if (!sp) throw badRequest(`_sort: ${type} has no search parameter "${code.slice(0, 100)}".`);
      parts.push(`${sortExpression(b, type, sp, desc)} ${dir}`);
    }
  }
  parts.push('r.res_id');
  return parts.join(', ');
}

/** The column each index table sorts by. */
const SORT_COLUMN: Record<string, string> = {
  string: 'sp_value_normalized',
  token: 'sp_value',
  number: 'sp_value',
  quantity: 'sp_value',
  uri: 'sp_uri',
};

/** The value a resource sorts by for one parameter (the least for ascending, the greatest for descending). */
function sortExpression(b: SqlBuilder, type: string, sp: SearchParamInfo, desc: boolean): string {
  const agg = desc ? 'max' : 'min';
  if (sp.type === 'reference') {
    return `(SELECT ${agg}(coalesce(l.target_resource_type || '/' || l.target_fhir_id, l.target_resource_url)) FROM hfj_res_link l
      WHERE l.src_resource_id = r.res_id AND l.owner_id = r.owner_id AND l.src_path = ANY(${b.param(sp.paths)}))`;
  }
  // A date range sorts by its start ascending and by its end descending.
  const column = sp.type === 'date' ? (desc ? 'sp_value_high' : 'sp_value_low') : SORT_COLUMN[sp.type];
  if (!column) throw badRequest(`_sort by ${sp.type} parameters such as ${sp.code} is not supported.`);
  return `(SELECT ${agg}(x.${column}) FROM ${TABLE[sp.type]} x WHERE x.res_id = r.res_id AND x.owner_id = r.owner_id AND x.hash_identity = ${b.param(hapiHash([type, sp.code]).toString())})`;
}
