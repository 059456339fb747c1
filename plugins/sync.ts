/**
 * The sync on pg-boss, in the same PostgreSQL: queue `sync` holds one job per connection at a time
 * (a stately queue keyed by the connection: one waiting, one running); the schedule queues every
 * active connection whose last sync is older than SYNC_INTERVAL_MINUTES; a connection's first sync
 * is queued as it is made (plugins/connect.ts). Each run's outcome goes to the app's webhook
 * (src/sync/webhooks.ts), from queue `webhook`, retried with backoff. With SYNC_WORKERS (the
 * default) this process runs the jobs; any number of processes can share them.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { syncConnection, type RunSummary, type SyncDeps } from '../src/sync/run.ts';
import { deliver, webhookOf, type WebhookEvent } from '../src/sync/webhooks.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Queues a sync of the connection (nothing more when one is already waiting). */
    queueSync(connectionId: string): Promise<void>;
  }
}

export const SYNC_QUEUE = 'sync';
const SCHEDULE_QUEUE = 'sync-schedule';
const WEBHOOK_QUEUE = 'webhook';

/** Queues the run's event for the app's webhook, when it has one. */
async function announce(app: FastifyInstance, connectionId: string, run: RunSummary): Promise<void> {
  const { rows } = await app.pg.query<{ app_id: number; user_id: string; app_user_id: string; system_id: string }>(
    `SELECT c.app_id, c.user_id::text, u.app_user_id, c.system_id FROM trb_connection c JOIN trb_user u ON u.id = c.user_id
     WHERE c.id = $1 AND EXISTS (SELECT 1 FROM trb_webhook w WHERE w.app_id = c.app_id)`,
    [connectionId],
  );
  const c = rows[0];
  if (!c) return;
  const type = run.status === 'succeeded' ? 'sync.succeeded' : run.status === 'needs_reauth' ? 'connection.needs_reauth' : 'sync.failed';
  const event: WebhookEvent = {
    type,
    created_at: new Date().toISOString(),
    connection_id: connectionId,
    oneup_user_id: Number(c.user_id),
    app_user_id: c.app_user_id,
    system_id: c.system_id,
    run: { ...run },
  };
  await app.jobs.send(WEBHOOK_QUEUE, { appId: c.app_id, event }, { retryLimit: 8, retryDelay: 1, retryBackoff: true });
}

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
    await app.jobs.createQueue(WEBHOOK_QUEUE);
    await app.jobs.work<{ connectionId: string }>(SYNC_QUEUE, { batchSize: 1, pollingIntervalSeconds: 2 }, async ([job]) => {
      const started = Date.now();
      const run = await syncConnection(deps, job.data.connectionId);
      app.log[run.status === 'succeeded' ? 'info' : 'warn']({ connection: job.data.connectionId, ...run, ms: Date.now() - started }, 'sync run');
      if (run.runId) await announce(app, job.data.connectionId, run);
      return run;
    });
    // Each event is tried until the app's receiver takes it: 1 s, 2 s, 4 s ... apart, 8 times.
    await app.jobs.work<{ appId: number; event: WebhookEvent }>(WEBHOOK_QUEUE, { batchSize: 1, pollingIntervalSeconds: 1 }, async ([job]) => {
      const hook = await webhookOf(app.pg, app.vault, job.data.appId);
      if (hook) await deliver(hook, job.data.event);
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
