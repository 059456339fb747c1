/**
 * `$reindex`: a background job that recomputes the index rows of what is stored (after a
 * SearchParameter was added), started on the system or one type; its state read back by the job's
 * id (the Content-Location of the start's 202). The job itself runs in src/search/reindex.ts.
 * See: http://hapifhir.io/fhir/OperationDefinition/Reindex
 */
import type { OperationOutcome, Parameters } from '@medplum/fhirtypes';
import type { PgBoss } from 'pg-boss';
import { REINDEX_QUEUE, type ReindexJob } from '../jobs/queues.ts';
import { fhirError, informational, notFound } from './errors.ts';
import type { RequestContext } from './ports.ts';
import { checkType } from './service.ts';

/** What `$reindex` needs of the job queue. */
export type ReindexQueue = Pick<PgBoss, 'send' | 'getJobById'>;

/** Queues a reindex of the app's data (of one type, or all); answers where to poll and what to say (a 202). */
export async function startReindex(jobs: ReindexQueue, ctx: RequestContext, type?: string): Promise<{ location: string; outcome: OperationOutcome }> {
  if (type) checkType(type);
  if (ctx.ownerId !== null)
    throw fhirError(403, 'forbidden', "$reindex works on all of an app's data: call it with the app's credentials (x-oneup-user-id: client).");
  const id = await jobs.send(REINDEX_QUEUE, { partitionId: ctx.partitionId, types: type ? [type] : undefined } satisfies ReindexJob);
  return {
    location: `${ctx.baseUrl}/$reindex/${id}`,
    outcome: informational(`Reindexing ${type ?? 'every resource'} in the background; GET ${ctx.baseUrl}/$reindex/${id} tells how far it is.`),
  };
}

/** The state of a reindex job of the app (its pg-boss state, and how many resources it did). */
export async function reindexStatus(jobs: ReindexQueue, ctx: RequestContext, jobId: string): Promise<Parameters> {
  if (!/^[0-9a-f-]{36}$/.test(jobId)) throw notFound(`No reindex job ${jobId.slice(0, 64)}.`);
  const job = await jobs.getJobById<ReindexJob>(REINDEX_QUEUE, jobId);
  if (!job || job.data.partitionId !== ctx.partitionId) throw notFound(`No reindex job ${jobId}.`);
  const processed = (job.output as { processed?: number } | null)?.processed;
  return {
    resourceType: 'Parameters',
    parameter: [{ name: 'status', valueCode: job.state }, ...(processed === undefined ? [] : [{ name: 'processed', valueInteger: processed }])],
  };
}
