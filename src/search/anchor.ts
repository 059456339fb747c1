/**
 * Searches anchored on a reference: `patient=X&code=Y` planned from the patient's links.
 */
import { IndexMatch, LinkMatch, type Condition } from './sql-builder.ts';

/** A search's conditions over `r`, and the ids it is anchored on (an `ARRAY(...)` of res_ids), if any. */
export interface Anchored {
  ids: string | null;
  conds: Condition[];
  /** The owners the scope reaches, over `r` (empty: every owner); inside the lookup of each id. */
  own?: string;
}

/**
 * `patient=X&code=Y` over `r`. The reference names one patient's links, a few hundred resources
 * created together and so close in res_id. Each other index condition (the inIndex shape) is
 * narrowed to them: `x.res_id = ANY(ARRAY(links))` over the index on (hash, res_id) reads the few
 * leaf pages that hold those ids in one descent (PostgreSQL 17 and later walk a sorted ANY array
 * along the index), where probing the index once per link read three pages a link: 20 pages instead
 * of 1,100 for a patient with 400 observations. The reference condition itself is then implied and
 * left out.
 *
 * The search is then anchored on those ids: the first such condition (or the links themselves,
 * when there is none) becomes the ids the search starts from (resourceSource), an array computed
 * first and read by primary key. PostgreSQL does not find this plan itself, as it cannot tell how few links one
 * target has; and before it has statistics (a store just loaded, not yet analyzed) it walked every
 * resource of the type and probed the index for each: 20-40 ms instead of 2 on 7,454 resources.
 * Works on the nodes referenceCondition / compartmentCondition (LinkMatch) and inIndex (IndexMatch) build.
 */
export function nestUnderReference(conds: Condition[]): Anchored {
  const isDriver = (x: Condition): x is LinkMatch => x instanceof LinkMatch && x.alias === 'r' && !x.negate;
  const driver = conds.findIndex(isDriver);
  if (driver < 0) return { ids: null, conds };
  const links = `ARRAY${(conds[driver] as LinkMatch).links()}`;
  let ids: string | null = null;
  const rest: Condition[] = [];
  conds.forEach((x, i) => {
    if (i === driver) return;
    if (!(x instanceof IndexMatch) || x.alias !== 'r' || x.negate) {
      rest.push(x);
      return;
    }
    const select = `SELECT x.res_id FROM ${x.table} x WHERE x.res_id = ANY(${links}) AND (${x.rows})`;
    if (ids === null) ids = `ARRAY(${select})`;
    else rest.push(`r.res_id IN (${select})`);
  });
  return { ids: ids ?? links, conds: rest };
}

/** The anchor as one more condition, where it cannot drive the search (inside an OR of types). */
export function anchorAsCondition(a: Anchored): Condition[] {
  return a.ids === null ? a.conds : [`r.res_id = ANY(${a.ids})`, ...a.conds];
}

/**
 * What a search over `r` reads: `hfj_resource r WHERE <conds>`; or, for a search anchored on ids
 * (nestUnderReference), those ids first and each resource by primary key, `r` being the result of
 * a LATERAL lookup per id that PostgreSQL cannot turn into a scan of the type (OFFSET 0 keeps it a
 * lookup), whatever its statistics say: without them (a store just loaded) it estimated a type's
 * resources at one row and walked them all instead.
 */
export function resourceSource(a: Anchored): string {
  if (a.ids === null) return `hfj_resource r WHERE ${a.conds.join(' AND ')}`;
  // The owner goes inside the lookup by primary key (res_id, owner_id): on Citus it names the shard.
  const own = a.own ? ` AND ${a.own}` : '';
  return `(SELECT DISTINCT unnest(${a.ids}) AS res_id) anchor CROSS JOIN LATERAL (SELECT * FROM hfj_resource r WHERE r.res_id = anchor.res_id${own} OFFSET 0) r WHERE ${a.conds.length ? a.conds.join(' AND ') : 'true'}`;
}
