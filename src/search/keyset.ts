/**
 * Unsorted searches come in res_id order and page by keyset (`_page=a<res_id>.<time>` / `b...`):
 * a resource keeps its res_id for life, so following next never skips or repeats one, whatever
 * other clients write meanwhile; later pages leave out resources created after the first page.
 */
import type { BundleLink } from '@medplum/fhirtypes';
import { COUNT_CAP } from './limits.ts';
import type { Page, PageRequest } from './page.ts';
import { pageOf } from './sql.ts';
import { count, totalFor } from './total.ts';

/**
 * A page after or before a res_id (`p.page`), or the first. `anchored`: the search collects its
 * matches first (a MATERIALIZED CTE), then orders and pages them (see SearchEngine.search).
 */
export async function keysetPage(req: PageRequest, anchored: boolean): Promise<Page> {
  const { db, repo, b, source, whereValues, p } = req;
  let total: number | undefined;
  const links: BundleLink[] = [];
  // Later pages hold what existed when the first was asked for: resources created since
  // (res_published is the creation time) are left out, so the pages add up to that result.
  const asOf = p.page?.asOf ?? Date.now();
  const snapshotSource = p.page ? `${source} AND r.res_published <= ${b.param(new Date(asOf))}` : source;
  const before = p.page?.before;
  const after = p.page?.after;
  const keyset = before ? ` AND r.res_id < ${b.param(before)}` : after ? ` AND r.res_id > ${b.param(after)}` : '';
  // A first page reads the ids of up to COUNT_CAP matches in the same statement, which gives the
  // total as well (no second pass over the matches); later pages carry that total in their link.
  const counting = !p.page && p.total !== 'none' && p.total !== 'estimate';
  const limit = counting ? Math.max(COUNT_CAP, p.count) + 1 : p.count + 1;
  const dir = before ? 'DESC' : 'ASC';
  const matches = `SELECT r.res_id, r.res_type, r.fhir_id, r.res_ver, r.owner_id FROM ${snapshotSource}${keyset}`;
  const ranked = (from: string) =>
    `SELECT m.*, row_number() OVER (ORDER BY m.res_id ${dir}) AS ord FROM ${from} ORDER BY m.res_id ${dir} LIMIT ${limit}`;
  const m = anchored ? `a AS MATERIALIZED (${matches}), m AS (${ranked('a m')})` : `m AS (${ranked(`(${matches}) m`)})`;
  const { versions, extra } = await repo.versionsWith<{ matched: number }>(db, `WITH ${m} ${pageOf('m', p.count)}`, b.values);
  const page = before ? versions.reverse() : versions;
  const matched = extra?.matched ?? 0;
  const more = matched > p.count;
  if (counting) {
    if (matched <= COUNT_CAP) total = matched;
    else if (p.total === 'accurate') total = await count(db, source, whereValues);
  } else if (p.page?.total !== undefined && p.total !== 'none') total = p.page.total;
  else if (p.total === 'estimate' || (p.total === 'accurate' && p.page)) {
    total = await totalFor(db, source, whereValues, p.total);
  }
  const carried = total === undefined ? '' : `.${total}`;
  const first = page[0]?.resId;
  const last = page[page.length - 1]?.resId;
  if (last && (more || before)) links.push({ relation: 'next', url: req.link({ _page: `a${last}.${asOf}${carried}` }) });
  if (first && (after || (before && more))) links.push({ relation: 'previous', url: req.link({ _page: `b${first}.${asOf}${carried}` }) });
  return { versions: page, total, links };
}
