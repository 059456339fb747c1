/**
 * The de-duplicated view of search (`_dedup=merged`): a person's duplicates across their sources
 * as one resource. Of each link the rules made or the person confirmed (not one they rejected), the
 * record with the smaller res_id stands for both: the other is left out of the matches, the one
 * kept names every record it stands for, with each one's source (meta.source) and tags, in an
 * extension, and references to a left-out record point at the one that stands for it.
 * The records themselves are never changed; without `_dedup` a search returns them all.
 */
import type { Extension, Meta } from '@medplum/fhirtypes';
import type pg from 'pg';
import type { RequestContext } from '../fhir/ports.ts';
import type { Repository, StoredVersion } from '../storage/repository.ts';
import type { SqlBuilder } from '../search/sql-builder.ts';

export const MERGED_EXTENSION = 'https://tributary.dev/fhir/StructureDefinition/dedup-merged';

/** The condition that leaves out the duplicates of the request's person (every user's, for the app). */
export function dedupCondition(b: SqlBuilder, ctx: RequestContext): string {
  const partition = b.param(ctx.partitionId);
  const owner = ctx.ownerId === null ? null : b.param(ctx.ownerId);
  return `r.res_id NOT IN (SELECT d.b_res_id FROM trb_dedup_link d WHERE d.partition_id = ${partition}${owner ? ` AND d.owner_id = ${owner}` : ''} AND d.status <> 'rejected')`;
}

/** What a page's records stand for: their alternates' current versions, and every alternate's primary (for references). */
async function linksFor(
  db: pg.Pool | pg.PoolClient,
  ctx: RequestContext,
): Promise<{ primary: Map<string, string>; ofPrimary: Map<string, string[]>; refOf: Map<string, string> }> {
  const { rows } = await db.query<{ a_res_id: string; b_res_id: string; a_ref: string; b_ref: string }>({
    text: /* SQL */ `SELECT d.a_res_id, d.b_res_id, ra.res_type || '/' || ra.fhir_id AS a_ref, rb.res_type || '/' || rb.fhir_id AS b_ref
      FROM trb_dedup_link d JOIN hfj_resource ra ON ra.res_id = d.a_res_id JOIN hfj_resource rb ON rb.res_id = d.b_res_id
      WHERE d.partition_id = $1 AND ($2::bigint IS NULL OR d.owner_id = $2) AND d.status <> 'rejected'
        AND ra.res_deleted_at IS NULL AND rb.res_deleted_at IS NULL`,
    values: [ctx.partitionId, ctx.ownerId],
  });
  const primary = new Map<string, string>(); // alternate's reference -> its primary's
  const ofPrimary = new Map<string, string[]>(); // primary res_id -> alternates' res_ids
  const refOf = new Map<string, string>();
  for (const r of rows) {
    primary.set(r.b_ref, r.a_ref);
    (ofPrimary.get(r.a_res_id) ?? ofPrimary.set(r.a_res_id, []).get(r.a_res_id)!).push(r.b_res_id);
    refOf.set(r.b_res_id, r.b_ref);
  }
  return { primary, ofPrimary, refOf };
}

/** References to a duplicate, in a resource's JSON, made references to the record that stands for it. */
function pointAtPrimaries(json: string, primary: Map<string, string>): string {
  if (!primary.size) return json;
  return json.replace(/("reference":")([A-Za-z]+\/[A-Za-z0-9\-.]{1,64})(")/g, (whole, head: string, ref: string, tail: string) => {
    const to = primary.get(ref);
    return to ? `${head}${to}${tail}` : whole;
  });
}

/**
 * The page as the de-duplicated view has it: each record that stands for others names them, with
 * each one's source and tags, in an extension; references to a duplicate point at the record that
 * stands for it.
 */
export async function mergedView(
  db: pg.Pool | pg.PoolClient,
  repo: Pick<Repository, 'readByResIds'>,
  ctx: RequestContext,
  page: StoredVersion[],
): Promise<StoredVersion[]> {
  if (!page.length) return page;
  const { primary, ofPrimary } = await linksFor(db, ctx);
  if (!primary.size) return page;
  const wanted = page.flatMap((v) => ofPrimary.get(v.resId) ?? []);
  const alternates = new Map((await repo.readByResIds(db, { partitionId: ctx.partitionId, ownerId: ctx.ownerId }, wanted)).map((v) => [v.resId, v]));
  return page.map((v) => {
    if (!v.json) return v;
    const mine = (ofPrimary.get(v.resId) ?? []).map((id) => alternates.get(id)).filter((x): x is StoredVersion => !!x?.json);
    const json = pointAtPrimaries(v.json, primary);
    if (!mine.length) return json === v.json ? v : { ...v, json };
    const resource = JSON.parse(json) as { extension?: Extension[]; meta?: Meta };
    const describe = (meta: Meta | undefined): Extension[] => [
      ...(meta?.source ? [{ url: 'source', valueUri: meta.source }] : []),
      ...(meta?.tag ?? []).map((tag) => ({ url: 'tag', valueCoding: tag })),
    ];
    const merged: Extension = {
      url: MERGED_EXTENSION,
      extension: [
        ...describe(resource.meta),
        ...mine.flatMap((a): Extension[] => {
          const other = JSON.parse(a.json!) as { meta?: Meta };
          return [{ url: 'record', valueReference: { reference: `${a.type}/${a.id}` } }, ...describe(other.meta)];
        }),
      ],
    };
    resource.extension = [...(resource.extension ?? []), merged];
    return { ...v, json: JSON.stringify(resource) };
  });
}
