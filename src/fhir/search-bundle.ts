/**
 * type-level search answered as a searchset Bundle, on the basic search of src/search/basic.ts
 * (offset paging, _count). The full search API replaces this module's internals.
 * See: https://hl7.org/fhir/R4/search.html
 */
import type pg from 'pg';
import type { Bundle, BundleEntry, Resource } from '@medplum/fhirtypes';
import { buildWhere } from '../search/basic.ts';
import { SqlBuilder } from '../search/sql-builder.ts';
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
  const [total, page] = await Promise.all([
    summary === 'count' || query.get('_total') !== 'none' ? db.query(totalSql) : Promise.resolve(undefined),
    summary === 'count' ? Promise.resolve([]) : svc.repo.currentPage(db, where.join(' AND '), b.values, count, offset),
  ]);
  const entry: BundleEntry[] = page.map((v) => ({
    fullUrl: `${ctx.baseUrl}/${type}/${v.id}`,
    resource: applySummary(JSON.parse(v.json!) as Resource, summary, elements),
    search: { mode: 'match' },
  }));
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
