/**
 * The search that the write interactions need (conditional create, update, delete, and conditional
 * references in transactions): AND of parameters, OR of comma-separated values, over the HAPI
 * indexes. The full search API (modifiers, chains, sorting, paging) builds on the same tables.
 * See: https://hl7.org/fhir/R4/search.html
 */
import { hapiHash, normalizeString } from '../storage/hash.ts';
import { HASH_PREFIX_LENGTH } from '../indexing/rows.ts';
import { dateRange } from '../indexing/date-range.ts';
import { badRequest } from '../fhir/errors.ts';
import type { SearchParamLookup } from '../fhir/ports.ts';
import { SqlBuilder } from './sql-builder.ts';

const h = (values: (string | null)[]) => hapiHash(values).toString();

/** Splits on commas not escaped with a backslash, and unescapes \, \| \$ \\. */
export function splitOr(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && i + 1 < value.length) {
      cur += value[++i];
    } else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

function splitToken(v: string): { system: string | null; code: string | null } {
  const i = v.search(/(?<!\\)\|/);
  if (i < 0) return { system: null, code: v };
  return { system: v.slice(0, i), code: v.slice(i + 1) || null };
}

const PREFIXES = ['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap'];

function prefixOf(v: string): { prefix: string; value: string } {
  const p = v.slice(0, 2);
  if (PREFIXES.includes(p) && /[0-9-]/.test(v[2] ?? '')) return { prefix: p, value: v.slice(2) };
  return { prefix: 'eq', value: v };
}

/** [low, high] in ms of a FHIR date/dateTime at its precision (the indexer's ranges). */
function dateBounds(v: string): [number, number] | null {
  const r = dateRange(v);
  return r ? [r.low, r.high] : null;
}

function tokenCondition(b: SqlBuilder, type: string, code: string, raw: string): string {
  const { system, code: value } = splitToken(raw);
  let cond: string;
  if (system === null) cond = `t.hash_value = ${b.param(h([type, code, value]))}`;
  else if (value === null) cond = `t.hash_sys = ${b.param(h([type, code, system]))}`;
  else cond = `t.hash_sys_and_value = ${b.param(h([type, code, system, value]))}`;
  return `EXISTS (SELECT 1 FROM hfj_spidx_token t WHERE t.res_id = r.res_id AND ${cond})`;
}

function stringCondition(b: SqlBuilder, type: string, code: string, raw: string, modifier: string): string {
  if (modifier === 'exact') {
    return `EXISTS (SELECT 1 FROM hfj_spidx_string s WHERE s.res_id = r.res_id AND s.hash_exact = ${b.param(h([type, code, raw]))})`;
  }
  const normalized = normalizeString(raw);
  const norm = normalized.replace(/[\\%_]/g, (c) => `\\${c}`);
  if (modifier === 'contains' || normalized.length < HASH_PREFIX_LENGTH) {
    const like = modifier === 'contains' ? `%${norm}%` : `${norm}%`;
    return `EXISTS (SELECT 1 FROM hfj_spidx_string s WHERE s.res_id = r.res_id AND s.hash_identity = ${b.param(h([type, code]))} AND s.sp_value_normalized LIKE ${b.param(like)})`;
  }
  // HAPI's hash_norm_prefix hashes the first HASH_PREFIX_LENGTH characters of the normalized value.
  const prefix = h([type, code, normalized.slice(0, HASH_PREFIX_LENGTH)]);
  return `EXISTS (SELECT 1 FROM hfj_spidx_string s WHERE s.res_id = r.res_id AND s.hash_norm_prefix = ${b.param(prefix)} AND s.sp_value_normalized LIKE ${b.param(`${norm}%`)})`;
}

function referenceCondition(b: SqlBuilder, paths: string[], raw: string, modifierType: string | null, targets: string[] | undefined): string {
  let targetType: string | null = modifierType;
  let id = raw;
  const m = /^(?:.*\/)?([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/.*)?$/.exec(raw);
  if (m) {
    targetType = m[1];
    id = m[2];
  }
  if (/^https?:|^urn:/.test(raw) && !m) {
    return `EXISTS (SELECT 1 FROM hfj_res_link l WHERE l.src_resource_id = r.res_id AND l.src_path = ANY(${b.param(paths)}) AND l.target_resource_url = ${b.param(raw)})`;
  }
  const typeCond = targetType
    ? `l.target_resource_type = ${b.param(targetType)}`
    : targets?.length
      ? `l.target_resource_type = ANY(${b.param(targets)})`
      : 'true';
  return `EXISTS (SELECT 1 FROM hfj_res_link l WHERE l.src_resource_id = r.res_id AND l.src_path = ANY(${b.param(paths)}) AND l.target_fhir_id = ${b.param(id)} AND ${typeCond})`;
}

function dateCondition(b: SqlBuilder, type: string, code: string, raw: string): string {
  const { prefix, value } = prefixOf(raw);
  const range = dateBounds(value);
  if (!range) throw badRequest(`The date "${raw}" of parameter ${code} is not a FHIR date; write it like 2024-05-01 or 2024-05-01T10:00:00Z.`);
  const lo = b.param(new Date(range[0]));
  const hi = b.param(new Date(range[1]));
  const cmp: Record<string, string> = {
    eq: `d.sp_value_low >= ${lo} AND d.sp_value_high <= ${hi}`,
    ne: `(d.sp_value_low < ${lo} OR d.sp_value_high > ${hi})`,
    gt: `(d.sp_value_high > ${hi} OR d.sp_value_high IS NULL)`,
    ge: `(d.sp_value_high >= ${lo} OR d.sp_value_high IS NULL)`,
    lt: `(d.sp_value_low < ${lo} OR d.sp_value_low IS NULL)`,
    le: `(d.sp_value_low <= ${hi} OR d.sp_value_low IS NULL)`,
    sa: `d.sp_value_low > ${hi}`,
    eb: `d.sp_value_high < ${lo}`,
    ap: `d.sp_value_low <= ${hi} AND d.sp_value_high >= ${lo}`,
  };
  return `EXISTS (SELECT 1 FROM hfj_spidx_date d WHERE d.res_id = r.res_id AND d.hash_identity = ${b.param(h([type, code]))} AND d.sp_missing = false AND ${cmp[prefix]})`;
}

function numberCondition(b: SqlBuilder, type: string, code: string, raw: string, table: string): string {
  const { prefix, value } = prefixOf(raw);
  const num = value.split('|')[0];
  if (!/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(num)) throw badRequest(`The value "${raw}" of parameter ${code} is not a number.`);
  const ops: Record<string, string> = { eq: '=', ne: '<>', gt: '>', lt: '<', ge: '>=', le: '<=', sa: '>', eb: '<', ap: '=' };
  return `EXISTS (SELECT 1 FROM ${table} n WHERE n.res_id = r.res_id AND n.hash_identity = ${b.param(h([type, code]))} AND n.sp_value ${ops[prefix]} ${b.param(num)}::numeric)`;
}

/**
 * A WHERE clause (over `hfj_resource r`) for a query string, for the given resource type.
 * Parameters that control results (_count, _sort, ...) are ignored here.
 */
export function buildWhere(b: SqlBuilder, params: SearchParamLookup, type: string, query: URLSearchParams): string[] {
  const where: string[] = [];
  for (const [key, rawValue] of query) {
    if (['_count', '_sort', '_format', '_pretty', '_summary', '_elements', '_total', '_include', '_revinclude', '_offset'].includes(key)) continue;
    const [code, modifier = ''] = key.split(':');
    const values = splitOr(rawValue);
    let ors: string[];
    if (code === '_id') {
      ors = [`r.fhir_id = ANY(${b.param(values)})`];
    } else if (code === '_lastUpdated') {
      ors = values.map((v) => {
        const { prefix, value } = prefixOf(v);
        const range = dateBounds(value);
        if (!range) throw badRequest(`_lastUpdated "${v}" is not a FHIR date.`);
        const op: Record<string, string> = { eq: 'BETWEEN', gt: '>', ge: '>=', lt: '<', le: '<=' };
        if (prefix === 'eq') return `r.res_updated BETWEEN ${b.param(new Date(range[0]))} AND ${b.param(new Date(range[1]))}`;
        if (!op[prefix]) throw badRequest(`_lastUpdated does not support the prefix ${prefix} here.`);
        return `r.res_updated ${op[prefix]} ${b.param(new Date(prefix === 'gt' || prefix === 'le' ? range[1] : range[0]))}`;
      });
    } else {
      const sp = params.get(type, code);
      if (!sp) throw badRequest(`${type} has no search parameter "${code}".`);
      ors = values.map((v) => {
        switch (sp.type) {
          case 'token':
            return tokenCondition(b, type, code, v);
          case 'string':
            return stringCondition(b, type, code, v, modifier);
          case 'uri':
            return `EXISTS (SELECT 1 FROM hfj_spidx_uri u WHERE u.res_id = r.res_id AND u.hash_uri = ${b.param(h([type, code, v]))})`;
          case 'reference':
            return referenceCondition(b, sp.paths, v, /^[A-Z]/.test(modifier) ? modifier : null, sp.targets);
          case 'date':
            return dateCondition(b, type, code, v);
          case 'number':
            return numberCondition(b, type, code, v, 'hfj_spidx_number');
          case 'quantity':
            return numberCondition(b, type, code, v, 'hfj_spidx_quantity');
          default:
            throw badRequest(`Searching by ${sp.type} parameters such as "${code}" is not supported here.`);
        }
      });
    }
    where.push(ors.length === 1 ? ors[0] : `(${ors.join(' OR ')})`);
  }
  return where;
}
