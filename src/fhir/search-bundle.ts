/**
 * type-level search answered as a searchset Bundle, on the basic search of src/search/basic.ts
 * (offset paging, _count). The full search API replaces this module's internals.
 * See: https://hl7.org/fhir/R4/search.html
 */
import type pg from 'pg';
import type { Bundle, BundleEntry, Resource } from '@medplum/fhirtypes';
import { buildWhere } from '../search/basic.ts';
import { SqlBuilder } from '../search/sql-builder.ts';
import { rebuildJson } from '../storage/meta.ts';
import { badRequest } from './errors.ts';
import type { RequestContext } from './ports.ts';
import { checkType, type FhirService } from './service.ts';
import { applySummary, parseElements, parseSummary } from './summary.ts';

export async function searchBundle(svc: FhirService, ctx: RequestContext, type: string, query: URLSearchParams, client?: pg.PoolClient): Promise<Bundle> {
  checkType(type);
  const count = Math.min(intOf(query.get('_count'), 20, '_count'), 1000);
  const offset = intOf(query.get('_offset'), 0, '_offset');
  const summary = parseSummary(query.get('_summary') ?? undefined);
  const elements = parseElements(query.get('_elements') ?? undefined);
  const b = new SqlBuilder();
  const where = [`r.partition_id = ${b.param(ctx.partitionId)}`, `r.res_type = ${b.param(type)}`, 'r.res_deleted_at IS NULL', ...buildWhere(b, svc.params, type, query)];
  const db = client ?? svc.pool;
  const totalSql = { text: `SELECT count(*)::int AS n FROM hfj_resource r WHERE ${where.join(' AND ')}`, values: b.values };
  const pageSql = {
    text: /* SQL */ `SELECT r.fhir_id, v.res_ver, v.res_updated, v.res_text_vc, v.source_uri,
        CASE WHEN v.has_tags THEN (SELECT json_agg(json_build_array(t.tag_type, t.tag_system, t.tag_code, t.tag_display, t.tag_version, t.tag_user_selected) ORDER BY ht.pid)
          FROM hfj_history_tag ht JOIN hfj_tag_def t ON t.tag_id = ht.tag_id WHERE ht.res_ver_pid = v.pid) END AS tags
      FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver
      WHERE ${where.join(' AND ')} ORDER BY r.res_updated DESC, r.res_id DESC LIMIT ${count} OFFSET ${offset}`,
    values: b.values,
  };
  const [total, page] = await Promise.all([
    summary === 'count' || query.get('_total') !== 'none' ? db.query(totalSql) : Promise.resolve(undefined),
    summary === 'count' ? Promise.resolve({ rows: [] }) : db.query(pageSql),
  ]);
  const entry: BundleEntry[] = page.rows.map((r) => {
    let resource = JSON.parse(rebuildJson(r.res_text_vc, { id: r.fhir_id, versionId: Number(r.res_ver), lastUpdated: r.res_updated, source: r.source_uri, tags: r.tags })) as Resource;
    resource = applySummary(resource, summary, elements);
    return { fullUrl: `${ctx.baseUrl}/${type}/${r.fhir_id}`, resource, search: { mode: 'match' } };
  });
  const self = new URLSearchParams(query);
  const link: Bundle['link'] = [{ relation: 'self', url: `${ctx.baseUrl}/${type}?${self}` }];
  const n = total?.rows[0].n as number | undefined;
  if (entry.length === count && (n === undefined || offset + count < n)) {
    const next = new URLSearchParams(query);
    next.set('_offset', String(offset + count));
    link.push({ relation: 'next', url: `${ctx.baseUrl}/${type}?${next}` });
  }
  if (offset > 0) {
    const prev = new URLSearchParams(query);
    prev.set('_offset', String(Math.max(0, offset - count)));
    link.push({ relation: 'previous', url: `${ctx.baseUrl}/${type}?${prev}` });
  }
  return { resourceType: 'Bundle', type: 'searchset', total: n, link, entry };
}

function intOf(v: string | null, fallback: number, name: string): number {
  if (v === null) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw badRequest(`${name} must be a non-negative integer.`);
  return n;
}
