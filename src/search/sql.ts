/**
 * Fixed statements of search (counts, snapshots), as small functions returning { text, values },
 * and the end of a page statement the paging modules share.
 */
import type { Sql } from '../storage/sql.ts';
import { READ_COLUMNS } from '../storage/sql.ts';

/** How long a sorted search's snapshot is kept. */
const SNAPSHOT_TTL = "interval '1 hour'";

/** How many rows `source` (`hfj_resource r WHERE ...`, see resourceSource) holds. */
export function countMatches(source: string, values: unknown[]): Sql {
  return { text: `SELECT count(*)::int AS n FROM ${source}`, values };
}

/** PostgreSQL's estimate of the rows of `source`. */
export function estimateMatches(source: string, values: unknown[]): Sql {
  return { text: `EXPLAIN (FORMAT JSON) SELECT 1 FROM ${source}`, values };
}

/** A sorted search's snapshot, if it is still kept and was made by the same query. */
export function readSnapshot(id: string, partitionId: number, queryHash: string): Sql {
  return {
    text: `SELECT res_ids, total FROM trb_search_snapshot WHERE id = $1 AND partition_id = $2 AND query_hash = $3 AND created > now() - ${SNAPSHOT_TTL}`,
    values: [id, partitionId, queryHash],
  };
}

export function expireSnapshots(): Sql {
  return { text: `DELETE FROM trb_search_snapshot WHERE created < now() - ${SNAPSHOT_TTL}`, values: [] };
}

/**
 * The end of a page statement over `cte` (matches with their `ord`er): the first `count` of them
 * read with READ_COLUMNS, each row also carrying `matched` (how many the CTE holds) and `extra`
 * columns; one row of nulls but those when nothing matched (see Repository.versionsWith).
 */
export function pageOf(cte: string, count: number, extra = ''): string {
  return `SELECT c.*, x.* FROM (SELECT (SELECT count(*) FROM ${cte})::int AS matched${extra ? `, ${extra}` : ''}) c
    LEFT JOIN LATERAL (SELECT ${READ_COLUMNS}, r.ord FROM ${cte} r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver WHERE r.ord <= ${count}) x ON true
    ORDER BY x.ord`;
}
