/**
 * `$reindex`: recomputes the index rows of resources already stored, after a SearchParameter was
 * added or changed. Runs as a pg-boss job (src/jobs/queues.ts) in batches by res_id, each batch in one
 * transaction (the old rows of a resource are deleted and the new ones written together, so a
 * search never sees a resource half-indexed). Resumable: a batch's work is whole or absent.
 */
import type pg from 'pg';
import type { FastifyBaseLogger } from 'fastify';
import type { Resource } from '@medplum/fhirtypes';
import { deleteIndexes } from '../storage/sql.ts';
import { indexInserts } from '../storage/index-rows.ts';
import { inTransaction } from '../storage/transaction.ts';
import type { ResourceIndexer } from '../fhir/ports.ts';
import type { ReindexJob } from '../jobs/queues.ts';

const BATCH = 500;

export interface ReindexProgress {
  processed: number;
  /** The last res_id done. */
  after: string;
}

/** Reindexes the next batch after `after`; answers null when nothing was left. */
export async function reindexBatch(pool: pg.Pool, indexer: ResourceIndexer, job: ReindexJob, after: string): Promise<ReindexProgress | null> {
  const { rows } = await pool.query<{ res_id: string; res_type: string; fhir_id: string; owner_id: string; json: string }>({
    text: `SELECT r.res_id, r.res_type, r.fhir_id, r.owner_id, v.res_text_vc AS json
      FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver
      WHERE r.partition_id = $1 AND r.res_deleted_at IS NULL AND r.res_id > $2 AND ($3::text[] IS NULL OR r.res_type = ANY($3))
      ORDER BY r.res_id LIMIT ${BATCH}`,
    values: [job.partitionId, after, job.types ?? null],
  });
  if (!rows.length) return null;
  const list = rows.map((r) => ({
    resId: r.res_id,
    type: r.res_type,
    ownerKey: r.owner_id,
    indexes: indexer.extract({ ...(JSON.parse(r.json) as Resource), id: r.fhir_id }, null),
  }));
  await inTransaction(pool, async (client) => {
    await client.query(
      deleteIndexes(
        list.map((r) => r.resId),
        list.map((r) => r.ownerKey),
        true,
      ),
    );
    for (const statement of indexInserts(job.partitionId, new Date(), list, new Map())) await client.query(statement);
  });
  return { processed: rows.length, after: rows[rows.length - 1].res_id };
}

/** The job: every batch in turn, with progress in the log; how many resources it reindexed. */
export async function runReindex(
  job: { id: string; data: ReindexJob },
  deps: { pool: pg.Pool; indexer: ResourceIndexer; log: FastifyBaseLogger },
): Promise<{ processed: number }> {
  let after = '0';
  let processed = 0;
  const started = Date.now();
  for (;;) {
    const step = await reindexBatch(deps.pool, deps.indexer, job.data, after);
    if (!step) break;
    processed += step.processed;
    after = step.after;
    deps.log.info({ job: job.id, processed }, 'reindexing');
  }
  deps.log.info({ job: job.id, processed, ms: Date.now() - started }, 'reindex done');
  return { processed };
}
