/**
 * The sync lanes of a process: SYNC_CONCURRENCY loops, each taking the next job of SYNC_QUEUE as
 * soon as it is done with the last (pg-boss's own workers wait out their polling interval between
 * jobs, even while jobs wait); an idle lane looks every 2 s, or at once when woken (this process
 * queued a sync). One job is one connection's run (`runSyncJob`).
 */
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { Alarm } from '../event-loop.ts';
import { SYNC_QUEUE, type SyncJob } from '../jobs/queues.ts';
import { announce } from './announce.ts';
import { syncConnection } from './run.ts';
import type { SyncDeps } from './run-types.ts';

/** How often an idle sync lane looks for a job. */
const IDLE_POLL_MS = 2000;

export interface LaneDeps {
  jobs: PgBoss;
  pool: pg.Pool;
  sync: SyncDeps;
  log: { info(o: object, msg: string): void; warn(o: object, msg: string): void; error(o: object, msg: string): void };
  /** The webhook deliveries, woken when a run's event is queued. */
  deliveries: { wake(): void };
  /** After a run that succeeded: the person's records de-duplicated (src/dedup/run.ts). */
  dedup?: (connectionId: string) => Promise<unknown>;
}

/**
 * One sync job: its connection's run, logged, and its event queued when it is news. The job ends as
 * the run takes the connection's lock (the lock keeps other runs out), else when the run ends; a job
 * whose run found the lock taken ends at once, skipped. Failures are recorded on the job, never thrown.
 */
export async function runSyncJob(job: { id: string; data: SyncJob }, d: LaneDeps): Promise<void> {
  try {
    const started = Date.now();
    const id = job.id;
    // The job ends as the run takes the connection's lock (the lock keeps other runs out).
    let completed = false;
    const run = await syncConnection(d.sync, job.data.connectionId, {
      onLocked: async () => {
        await d.jobs.complete(SYNC_QUEUE, id, { locked: new Date().toISOString() });
        completed = true;
      },
    });
    d.log[run.status === 'succeeded' || run.status === 'skipped' ? 'info' : 'warn'](
      { connection: job.data.connectionId, ...run, ms: Date.now() - started },
      'sync run',
    );
    if (run.runId && (await announce(d, job.data.connectionId, run))) d.deliveries.wake();
    // The person's duplicates across their sources, found again after every sync (cheap when nothing changed).
    if (run.status === 'succeeded' && d.dedup) {
      await d
        .dedup(job.data.connectionId)
        .catch((err: unknown) => d.log.warn({ connection: job.data.connectionId, err: String(err) }, 'de-duplication failed'));
    }
    if (!completed) await d.jobs.complete(SYNC_QUEUE, job.id, run);
  } catch (err) {
    d.log.error({ connection: job.data.connectionId, err: String(err) }, 'sync job failed');
    await d.jobs.fail(SYNC_QUEUE, job.id, { message: String(err) }).catch(() => {});
  }
}

/** Starts `concurrency` lanes; `wake` rouses the idle ones, `stop` ends them after their current jobs. */
export function startLanes(d: LaneDeps & { concurrency: number }): { wake(): void; stop(): Promise<void> } {
  let stopping = false;
  const alarm = new Alarm();
  const lane = async () => {
    while (!stopping) {
      let job: { id: string; data: SyncJob } | undefined;
      try {
        job = (await d.jobs.fetch<SyncJob>(SYNC_QUEUE, { batchSize: 1 }))[0];
      } catch (err) {
        d.log.error({ err: String(err) }, 'the sync queue could not be read');
      }
      if (!job) {
        await alarm.sleep(IDLE_POLL_MS);
        continue;
      }
      await runSyncJob(job, d);
    }
  };
  const lanes = Array.from({ length: d.concurrency }, () => lane());
  return {
    wake: () => alarm.wake(),
    stop: async () => {
      stopping = true;
      alarm.wake();
      await Promise.all(lanes);
    },
  };
}
