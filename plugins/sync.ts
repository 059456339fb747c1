/**
 * The sync on pg-boss, in the same PostgreSQL: queue `sync` holds one job per connection at a time
 * (a stately queue keyed by the connection: one waiting, one running); the schedule queues every
 * active connection whose last sync is older than SYNC_INTERVAL_MINUTES; a connection's first sync
 * is queued as it is made (plugins/connect.ts). With SYNC_WORKERS (the default) this process runs
 * the jobs; any number of processes can share them.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { syncConnection, type SyncDeps } from '../src/sync/run.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Queues a sync of the connection (nothing more when one is already waiting). */
    queueSync(connectionId: string): Promise<void>;
  }
}

export const SYNC_QUEUE = 'sync';
const SCHEDULE_QUEUE = 'sync-schedule';

/** What a sync needs, from the app's parts. */
export function syncDeps(app: FastifyInstance): SyncDeps {
  return {
    pool: app.pg,
    vault: app.vault,
    repo: app.fhir.repo,
    indexer: app.fhir.indexer,
    validator: app.fhir.validator,
    clientKey: () => app.clientKeys.load(),
    ownOrigin: new URL(app.config.baseUrl).origin,
  };
}

export default fp(
  async function sync(app: FastifyInstance) {
    await app.jobs.createQueue(SYNC_QUEUE, { name: SYNC_QUEUE, policy: 'stately' });
    app.decorate('queueSync', async (connectionId: string) => {
      await app.jobs.send(SYNC_QUEUE, { connectionId }, { singletonKey: connectionId, retryLimit: 0 });
    });
    if (!app.config.syncWorkers) return;

    const deps = syncDeps(app);
    await app.jobs.work<{ connectionId: string }>(SYNC_QUEUE, { batchSize: 1, pollingIntervalSeconds: 2 }, async ([job]) => {
      const started = Date.now();
      const run = await syncConnection(deps, job.data.connectionId);
      app.log[run.status === 'succeeded' ? 'info' : 'warn']({ connection: job.data.connectionId, ...run, ms: Date.now() - started }, 'sync run');
      return run;
    });

    const minutes = app.config.syncIntervalMinutes;
    await app.jobs.createQueue(SCHEDULE_QUEUE);
    await app.jobs.schedule(SCHEDULE_QUEUE, minutes === 1 ? '* * * * *' : `*/${minutes} * * * *`);
    await app.jobs.work(SCHEDULE_QUEUE, async () => {
      const { rows } = await app.pg.query<{ id: string }>(
        `SELECT id::text FROM trb_connection WHERE status = 'active' AND (last_sync_at IS NULL OR last_sync_at < now() - make_interval(mins => $1))`,
        [minutes],
      );
      for (const r of rows) await app.queueSync(r.id);
      app.log.info({ queued: rows.length }, 'syncs queued');
    });
  },
  { name: 'sync', dependencies: ['db', 'core', 'auth', 'jobs'] },
);
