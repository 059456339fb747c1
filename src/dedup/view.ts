/**
 * The de-duplicated view of search (`_dedup=merged`): a person's duplicates across their sources
 * as one resource. Of each link the rules made or the person confirmed (not one they rejected), the
 * record with the smaller res_id stands for both: the other is left out of the matches, and the one
 * kept names every record it stands for, with each one's source (meta.source), in an extension.
 * The records themselves are never changed; without `_dedup` a search returns them all.
 */
import type { Extension } from '@medplum/fhirtypes';
import type pg from 'pg';
import type { RequestContext } from '../fhir/ports.ts';
import type { StoredVersion } from '../storage/repository.ts';
import type { SqlBuilder } from '../search/sql-builder.ts';

export const MERGED_EXTENSION = 'https://tributary.dev/fhir/StructureDefinition/dedup-merged';

/** The condition that leaves out the duplicates of the request's person (every user's, for the app). */
export function dedupCondition(b: SqlBuilder, ctx: RequestContext): string {
  const partition = b.param(ctx.partitionId);
  const owner = ctx.ownerId === null ? null : b.param(ctx.ownerId);
  return `r.res_id NOT IN (SELECT d.b_res_id FROM trb_dedup_link d WHERE d.partition_id = ${partition}${owner ? ` AND d.owner_id = ${owner}` : ''} AND d.status <> 'rejected')`;
}

interface AlternateRow {
  a_res_id: string;
  res_type: string;
  fhir_id: string;
  source_uri: string | null;
}

/** The page's records that stand for others, each naming them (and their sources) in an extension. */
export async function mergedView(db: pg.Pool | pg.PoolClient, ctx: RequestContext, page: StoredVersion[]): Promise<StoredVersion[]> {
  if (!page.length) return page;
  const { rows } = await db.query<AlternateRow>({
    text: /* SQL */ `SELECT d.a_res_id, r.res_type, r.fhir_id, v.source_uri FROM trb_dedup_link d
      JOIN hfj_resource r ON r.res_id = d.b_res_id AND r.res_deleted_at IS NULL JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver
      WHERE d.partition_id = $1 AND ($2::bigint IS NULL OR d.owner_id = $2) AND d.status <> 'rejected' AND d.a_res_id = ANY($3::bigint[])
      ORDER BY d.a_res_id, d.b_res_id`,
    values: [ctx.partitionId, ctx.ownerId, page.map((v) => v.resId)],
  });
  if (!rows.length) return page;
  const byPrimary = new Map<string, AlternateRow[]>();
  for (const r of rows) (byPrimary.get(r.a_res_id) ?? byPrimary.set(r.a_res_id, []).get(r.a_res_id)!).push(r);
  return page.map((v) => {
    const alternates = byPrimary.get(v.resId);
    if (!alternates || !v.json) return v;
    const resource = JSON.parse(v.json) as { extension?: Extension[]; meta?: { source?: string } };
    const merged: Extension = {
      url: MERGED_EXTENSION,
      extension: [
        ...(resource.meta?.source ? [{ url: 'source', valueUri: resource.meta.source }] : []),
        ...alternates.flatMap((a): Extension[] => [
          { url: 'record', valueReference: { reference: `${a.res_type}/${a.fhir_id}` } },
          ...(a.source_uri ? [{ url: 'source', valueUri: a.source_uri }] : []),
        ]),
      ],
    };
    resource.extension = [...(resource.extension ?? []), merged];
    return { ...v, json: JSON.stringify(resource) };
  });
}
