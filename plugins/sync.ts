/**
 * The sync on pg-boss, in the same PostgreSQL: queue `sync` holds one job per connection at a time
 * (a stately queue keyed by the connection: one waiting, one running); the schedule queues every
 * active connection whose last sync is older than SYNC_INTERVAL_MINUTES; a connection's first sync
 * is queued as it is made (plugins/connect.ts). A run that changed something or failed is announced
 * to the app's webhook (src/sync/webhooks.ts: queue `webhook`, delivered beside the sync lanes,
 * retried with backoff); a run that found nothing new, or was skipped, is not. With SYNC_WORKERS
 * (the default) this process runs SYNC_CONCURRENCY jobs at once; any number of processes can share
 * them. One run per connection is the run's own lock (src/sync/run.ts: an advisory lock the server
 * drops with a dead worker), not the job: a job is completed as its run takes the lock, so a worker
 * that dies mid-run leaves no active job behind, and the connection's next job runs at once, marks
 * the cut-off run failed and goes on from the pages it stored; jobs queued while a run holds the
 * lock end at once, skipped.
 *
 * Operators (admin key): POST /admin/sync queues every active connection now; GET
 * /admin/sync?since= sums up the runs started since an instant (for a cycle's progress).
 */
import { sendApiError } from '../src/errors/http.ts';
import fp from 'fastify-plugin';
import { dedupPerson, rerunChangedRules } from '../src/dedup/run.ts';
import { connectionOwner } from '../src/dedup/sql.ts';
import { DEFAULT_SETTINGS, ruleSettings } from '../src/dedup/rules.ts';
import fs from 'node:fs';
import { adminOnly } from './admin.ts';
import type { FastifyInstance } from 'fastify';
import { startLanes } from '../src/sync/lanes.ts';
import type { SyncDeps } from '../src/sync/run.ts';
import { dueBefore, queueDue } from '../src/sync/schedule.ts';
import { DEFAULT_SESSION } from '../src/sync/session.ts';
import { createSyncShared, type SyncShared } from '../src/sync/shared.ts';
import { syncSummary } from '../src/sync/summary.ts';
import { startDeliveries } from '../src/sync/webhook-deliveries.ts';
import { SCHEDULE_CRON, SCHEDULE_QUEUE, SYNC_QUEUE, syncJob } from '../src/jobs/queues.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Queues a sync of the connection (nothing more when one is already waiting). */
    queueSync(connectionId: string): Promise<void>;
    /** What this process's sync runs share: the per-system limiter, capabilities, session slots and refresh times. */
    syncShared: SyncShared;
  }
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
    fetch: app.outbound.fetch,
    discovery: app.discovery,
    session: { ...DEFAULT_SESSION, concurrency: app.config.syncSystemConcurrency, ratePerSecond: app.config.syncSystemRate },
    limiter: app.syncShared.limiter,
    capabilities: app.syncShared.capabilities,
    sessions: app.syncShared.sessions,
    policy: {
      checkpointMarginSeconds: app.config.syncCheckpointMarginSeconds,
      sweepHours: app.config.syncSweepHours,
      fullMinutes: app.config.syncFullMinutes,
    },
    attachments: { maxBytes: app.config.syncAttachmentMaxBytes, perRun: app.config.syncAttachmentsPerRun },
  };
}

/** DEDUP_RULES_FILE read and checked: an Error saying what to fix when it cannot be used. */
function readRuleSettings(file: string) {
  try {
    return ruleSettings(JSON.parse(fs.readFileSync(file, 'utf8')));
  } catch (err) {
    throw new Error(`DEDUP_RULES_FILE ${file}: ${(err as Error).message}`);
  }
}

export default fp(
  async function sync(app: FastifyInstance) {
    // The per-system rate limiter and the caches, one per process (app).
    app.decorate('syncShared', createSyncShared(app.pg, { ratePerSecond: app.config.syncSystemRate }));
    /** Wakes this process's idle sync lanes (when it runs them). */
    let wakeLanes = () => {};
    app.decorate('queueSync', async (connectionId: string) => {
      await app.jobs.insert(SYNC_QUEUE, [syncJob(connectionId)]);
      wakeLanes();
    });
    /** Queues the active connections last synced before `before` (all of them without it); how many. */
    const queueDueNow = async (before?: Date): Promise<number> => {
      const queued = await queueDue({ pool: app.pg, jobs: app.jobs }, before);
      wakeLanes();
      return queued;
    };

    await app.register(
      async (admin) => {
        admin.addHook('onRequest', adminOnly(app));
        admin.post('/sync', async () => ({ queued: await queueDueNow(), at: new Date().toISOString() }));
        admin.get('/sync', async (req, reply) => {
          const since = (req.query as { since?: string }).since;
          const from = since === undefined ? undefined : new Date(Date.parse(since));
          if (from && Number.isNaN(from.getTime()))
            return sendApiError(reply, 'invalid_parameter', 'since must be an instant, such as 2026-11-29T10:00:00Z.', false);
          return syncSummary(app.pg, from);
        });
      },
      { prefix: '/admin' },
    );
    if (!app.config.syncWorkers) return;

    // Webhook events, WEBHOOK_CONCURRENCY at once, one app's receiver holding at most its share.
    const deliveries = startDeliveries({
      jobs: app.jobs,
      pool: app.pg,
      vault: app.vault,
      fetch: app.outbound.fetch,
      log: app.log,
      concurrency: app.config.webhookConcurrency,
    });
    // De-duplication's rule settings (DEDUP_RULES_FILE over the defaults); a bad file stops the start, saying why.
    const dedupSettings = app.config.dedupRulesFile ? readRuleSettings(app.config.dedupRulesFile) : DEFAULT_SETTINGS;
    // SYNC_CONCURRENCY lanes (src/sync/lanes.ts); an idle lane looks every 2 s, or at once when this
    // process queues a sync.
    const lanes = startLanes({
      jobs: app.jobs,
      pool: app.pg,
      sync: syncDeps(app),
      log: app.log,
      deliveries,
      concurrency: app.config.syncConcurrency,
      dedup: async (connectionId) => {
        const { rows } = await app.pg.query<{ app_id: number; user_id: string }>(connectionOwner(connectionId));
        if (rows[0]) await dedupPerson(app.pg, rows[0].app_id, rows[0].user_id, dedupSettings);
      },
    });
    wakeLanes = () => lanes.wake();
    // The rules changed since people's links were made: all of them again, in the background.
    const stopRerun = new AbortController();
    void rerunChangedRules(app.pg, dedupSettings, app.log, stopRerun.signal).catch((err: unknown) =>
      app.log.warn({ err: String(err) }, 'de-duplication under the new rules stopped'),
    );
    app.addHook('onClose', async () => stopRerun.abort());
    app.addHook('onClose', async () => {
      await lanes.stop();
      await deliveries.stop();
    });

    const minutes = app.config.syncIntervalMinutes;
    // Every minute, the connections due (not synced within the interval) are queued: any interval
    // works, where a cron of `*/N` minutes could not say 90 minutes or 3 hours.
    await app.jobs.schedule(SCHEDULE_QUEUE, SCHEDULE_CRON);
    await app.jobs.work(SCHEDULE_QUEUE, async () => {
      // Due: not synced in the last interval, less a little (src/sync/schedule.ts).
      const queued = await queueDueNow(dueBefore(minutes));
      app.log.info({ queued }, 'syncs queued');
    });
  },
  { name: 'sync', dependencies: ['db', 'core', 'auth', 'jobs', 'outbound'] },
);
