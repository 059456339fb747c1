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

/** The person's links not rejected, of records still there: the maps the merged view is made with. */
async function linksFor(
  db: pg.Pool | pg.PoolClient,
  ctx: RequestContext,
): Promise<{ primaryRef: Map<string, string>; primaryOf: Map<string, string>; ofPrimary: Map<string, string[]> }> {
  const { rows } = await db.query<{ a_res_id: string; b_res_id: string; a_ref: string; b_ref: string }>({
    text: /* SQL */ `SELECT d.a_res_id, d.b_res_id, ra.res_type || '/' || ra.fhir_id AS a_ref, rb.res_type || '/' || rb.fhir_id AS b_ref
      FROM trb_dedup_link d JOIN hfj_resource ra ON ra.res_id = d.a_res_id JOIN hfj_resource rb ON rb.res_id = d.b_res_id
      WHERE d.partition_id = $1 AND ($2::bigint IS NULL OR d.owner_id = $2) AND d.status <> 'rejected'
        AND ra.res_deleted_at IS NULL AND rb.res_deleted_at IS NULL`,
    values: [ctx.partitionId, ctx.ownerId],
  });
  // Each link's later record is left out for its earlier one; along a chain (a-b, b-c) the first
  // record of the chain stands for all (res_ids only fall along it, so it ends).
  const up = new Map<string, string>();
  const refs = new Map<string, string>();
  for (const r of rows) {
    const was = up.get(r.b_res_id);
    if (!was || BigInt(r.a_res_id) < BigInt(was)) up.set(r.b_res_id, r.a_res_id);
    refs.set(r.a_res_id, r.a_ref).set(r.b_res_id, r.b_ref);
  }
  const rootOf = (id: string): string => {
    let at = id;
    for (let next = up.get(at); next !== undefined; next = up.get(at)) at = next;
    return at;
  };
  const primaryRef = new Map<string, string>(); // a left-out record's reference -> the kept one's
  const primaryOf = new Map<string, string>(); // a left-out record's res_id -> the kept one's
  const ofPrimary = new Map<string, string[]>(); // the kept record's res_id -> the left-out ones'
  for (const b of up.keys()) {
    const a = rootOf(b);
    primaryRef.set(refs.get(b)!, refs.get(a)!);
    primaryOf.set(b, a);
    (ofPrimary.get(a) ?? ofPrimary.set(a, []).get(a)!).push(b);
  }
  return { primaryRef, primaryOf, ofPrimary };
}

/** References to a duplicate, in a resource's JSON, made references to the record that stands for it. */
function pointAtPrimaries(json: string, primary: Map<string, string>): string {
  return json.replace(/("reference":")([A-Za-z]+\/[A-Za-z0-9\-.]{1,64})(")/g, (whole, head: string, ref: string, tail: string) => {
    const to = primary.get(ref);
    return to ? `${head}${to}${tail}` : whole;
  });
}

const describe = (meta: Meta | undefined): Extension[] => [
  ...(meta?.source ? [{ url: 'source', valueUri: meta.source }] : []),
  ...(meta?.tag ?? []).map((tag) => ({ url: 'tag', valueCoding: tag })),
];

/**
 * A page (and what it includes) as the de-duplicated view has it: each record that stands for
 * others names them, with each one's source and tags, in an extension; references to a duplicate
 * point at the record that stands for it; an included duplicate is the record that stands for it
 * (once, and not when it is a match already).
 */
export async function mergedView(
  db: pg.Pool | pg.PoolClient,
  repo: Pick<Repository, 'readByResIds'>,
  ctx: RequestContext,
  page: StoredVersion[],
  included: StoredVersion[] = [],
): Promise<{ page: StoredVersion[]; included: StoredVersion[] }> {
  if (!page.length && !included.length) return { page, included };
  const { primaryRef, primaryOf, ofPrimary } = await linksFor(db, ctx);
  if (!primaryRef.size) return { page, included };
  const scope = { partitionId: ctx.partitionId, ownerId: ctx.ownerId };
  // Included duplicates: the records that stand for them instead.
  const have = new Set(page.map((v) => v.resId));
  const missing = [...new Set(included.map((v) => primaryOf.get(v.resId)).filter((id): id is string => !!id && !have.has(id)))];
  const primaries = new Map((await repo.readByResIds(db, scope, missing)).map((v) => [v.resId, v]));
  const seen = new Set(have);
  const inc: StoredVersion[] = [];
  for (const v of included) {
    const kept = primaryOf.has(v.resId) ? primaries.get(primaryOf.get(v.resId)!) : v;
    if (!kept || seen.has(kept.resId)) continue;
    seen.add(kept.resId);
    inc.push(kept);
  }
  const all = [...page, ...inc];
  const wanted = all.flatMap((v) => ofPrimary.get(v.resId) ?? []);
  const alternates = new Map((await repo.readByResIds(db, scope, wanted)).map((v) => [v.resId, v]));
  const decorate = (v: StoredVersion): StoredVersion => {
    if (!v.json) return v;
    const json = pointAtPrimaries(v.json, primaryRef);
    const mine = (ofPrimary.get(v.resId) ?? []).map((id) => alternates.get(id)).filter((x): x is StoredVersion => !!x?.json);
    if (!mine.length) return json === v.json ? v : { ...v, json };
    const resource = JSON.parse(json) as { extension?: Extension[]; meta?: Meta };
    const merged: Extension = {
      url: MERGED_EXTENSION,
      extension: [
        ...describe(resource.meta),
        ...mine.flatMap((a): Extension[] => [
          { url: 'record', valueReference: { reference: `${a.type}/${a.id}` } },
          ...describe((JSON.parse(a.json!) as { meta?: Meta }).meta),
        ]),
      ],
    };
    resource.extension = [...(resource.extension ?? []), merged];
    return { ...v, json: JSON.stringify(resource) };
  };
  return { page: page.map(decorate), included: inc.map(decorate) };
}
