/**
 * Sorted searches page through a snapshot: the ordered res_ids (the first SNAPSHOT_CAP of them) are
 * fixed when the first page is asked for and kept in trb_search_snapshot, and later pages read
 * slices of them (`_snapshot=<id>&_offset=<n>`), so a resource whose sort value changes meanwhile
 * does not move between pages.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { BundleLink } from '@medplum/fhirtypes';
import { fhirError } from '../fhir/errors.ts';
import type { StoredVersion } from '../storage/repository.ts';
import { SNAPSHOT_CAP } from './limits.ts';
import type { Page, PageRequest } from './page.ts';
import { warning } from './parse.ts';
import { expireSnapshots, pageOf, readSnapshot } from './sql.ts';
import { count } from './total.ts';

/** Deletes expired snapshots now and then (one search in a hundred), in the background. */
export class SnapshotExpiry {
  private readonly pool: pg.Pool;
  private snapshots = 0;

  constructor(pool: pg.Pool) {
    this.pool = pool;
  }

  expire(): void {
    if (++this.snapshots % 100 !== 1) return;
    this.pool.query(expireSnapshots()).catch(() => {
      // a later search tries again
    });
  }
}

/**
 * A page of a sorted search: from its snapshot (`p.snapshot`), or the first page, which makes the
 * snapshot when the matches span more than one page. `hash` names the query (and who asked).
 */
export async function sortedPage(req: PageRequest, orderBy: string, hash: string, expiry: SnapshotExpiry): Promise<Page> {
  const { db, repo, ctx, b, source, whereValues, p } = req;
  let page: StoredVersion[];
  let total: number | undefined;
  const links: BundleLink[] = [];
  let offset = 0;
  let snapshotSize = 0;
  if (p.snapshot) {
    const { rows } = await db.query<{ res_ids: string[]; total: number | null }>(readSnapshot(p.snapshot.id, ctx.partitionId, hash));
    if (!rows.length)
      throw fhirError(410, 'expired', 'This search has expired (searches are kept for an hour) or belongs to another query; run the search again.');
    total = rows[0].total ?? undefined;
    offset = p.snapshot.offset;
    snapshotSize = rows[0].res_ids.length;
    page = await repo.readByResIds(db, ctx, rows[0].res_ids.slice(offset, offset + p.count));
  } else {
    // One statement: the ordered matches (up to SNAPSHOT_CAP + 1), their first page read, and,
    // when they span more than one page, the snapshot the next links page through.
    const id = randomUUID();
    // (The LIMIT is large: PostgreSQL never prefers an ordered index scan that would read past the matches.)
    const m = `m AS (SELECT r.res_id, r.res_type, r.fhir_id, r.res_ver, r.owner_id, row_number() OVER (ORDER BY ${orderBy}) AS ord
          FROM ${source} ORDER BY ${orderBy} LIMIT ${SNAPSHOT_CAP + 1})`;
    const { versions, extra } = await repo.versionsWith<{ matched: number; saved: number }>(
      db,
      `WITH ${m},
           s AS (INSERT INTO trb_search_snapshot (id, partition_id, query_hash, total, res_ids)
             SELECT ${b.param(id)}, ${b.param(ctx.partitionId)}, ${b.param(hash)}, CASE WHEN count(*) <= ${SNAPSHOT_CAP} THEN count(*) END,
               array_agg(res_id ORDER BY ord) FILTER (WHERE ord <= ${SNAPSHOT_CAP})
             FROM m HAVING count(*) > ${p.count} RETURNING 1)
           ${pageOf('m', p.count, '(SELECT count(*) FROM s)::int AS saved')}`,
      b.values,
    );
    page = versions;
    const matched = extra?.matched ?? 0;
    if (matched <= SNAPSHOT_CAP) total = matched;
    else {
      if (p.total === 'accurate') total = await count(db, source, whereValues);
      p.warnings.push(
        warning(
          `More than ${SNAPSHOT_CAP} resources match; a sorted search pages through the first ${SNAPSHOT_CAP}. Narrow the search to see the rest.`,
        ),
      );
    }
    if (extra?.saved) {
      expiry.expire();
      p.snapshot = { id, offset: 0 };
      snapshotSize = Math.min(matched, SNAPSHOT_CAP);
    }
  }
  if (p.snapshot && offset + p.count < snapshotSize) {
    links.push({ relation: 'next', url: req.link({ _snapshot: p.snapshot.id, _offset: String(offset + p.count) }) });
  }
  if (p.snapshot && offset > 0) {
    links.push({ relation: 'previous', url: req.link({ _snapshot: p.snapshot.id, _offset: String(Math.max(0, offset - p.count)) }) });
  }
  return { versions: page, total, links };
}
