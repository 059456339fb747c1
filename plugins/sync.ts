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
import fp from 'fastify-plugin';
import { adminOnly } from './admin.ts';
import { Alarm } from '../src/event-loop.ts';
import type { FastifyInstance } from 'fastify';
import { createSystemLimiter, type SystemLimiter } from '../src/sync/rate-limit.ts';
import { syncConnection, type RunSummary, type SyncDeps } from '../src/sync/run.ts';
import { DEFAULT_SESSION } from '../src/sync/session.ts';
import { queueEvent, startDeliveries, WEBHOOK_QUEUE, type EventType } from '../src/sync/webhooks.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Queues a sync of the connection (nothing more when one is already waiting). */
    queueSync(connectionId: string): Promise<void>;
  }
}

export const SYNC_QUEUE = 'sync';
const SCHEDULE_QUEUE = 'sync-schedule';
/**
 * How long a sync job may stay active before pg-boss gives it up (its worker is presumed dead). A
 * job is active only until its run holds the connection's lock (it is completed then): the run's
 * length is not bounded by this, and a worker that dies mid-run holds no queue slot (the stately
 * queue keeps one active job per connection); the next job's run finds the lock free at once.
 */
export const SYNC_EXPIRE_SECONDS = 600;
/** How often an idle sync lane looks for a job. */
const IDLE_POLL_MS = 2000;

/**
 * Queues the run's event for the app's webhook, when it has one and the run is news: it changed
 * something, or it failed. A run that found nothing new (most runs of a cycle) sends nothing and
 * costs no query.
 */
async function announce(app: FastifyInstance, connectionId: string, run: RunSummary): Promise<boolean> {
  if (run.status === 'skipped' || (run.status === 'succeeded' && run.created + run.updated + run.deleted === 0)) return false;
  const { rows } = await app.pg.query<{ app_id: number; user_id: string; app_user_id: string; system_id: string }>(
    `SELECT c.app_id, c.user_id::text, u.app_user_id, c.system_id FROM trb_connection c JOIN trb_user u ON u.id = c.user_id
     WHERE c.id = $1 AND EXISTS (SELECT 1 FROM trb_webhook w WHERE w.app_id = c.app_id)`,
    [connectionId],
  );
  const c = rows[0];
  if (!c) return false;
  const type: EventType = run.status === 'succeeded' ? 'sync.succeeded' : run.status === 'needs_reauth' ? 'connection.needs_reauth' : 'sync.failed';
  await queueEvent(app.jobs, c.app_id, type, { connection_id: connectionId, oneup_user_id: Number(c.user_id), app_user_id: c.app_user_id, system_id: c.system_id, run: { ...run } });
  return true;
}

/** The per-system rate limiter, one per process (app). */
const limiters = new WeakMap<FastifyInstance, SystemLimiter>();

/** What a sync needs, from the app's parts. */
export function syncDeps(app: FastifyInstance): SyncDeps {
  let limiter = limiters.get(app);
  if (!limiter) limiters.set(app, (limiter = createSystemLimiter(app.pg, { ratePerSecond: app.config.syncSystemRate })));
  return {
    pool: app.pg,
    vault: app.vault,
    repo: app.fhir.repo,
    indexer: app.fhir.indexer,
    validator: app.fhir.validator,
    clientKey: () => app.clientKeys.load(),
    ownOrigin: new URL(app.config.baseUrl).origin,
    fetch: app.outbound.fetch,
    session: { ...DEFAULT_SESSION, concurrency: app.config.syncSystemConcurrency, ratePerSecond: app.config.syncSystemRate },
    limiter,
    policy: { checkpointMarginSeconds: app.config.syncCheckpointMarginSeconds, sweepHours: app.config.syncSweepHours, fullMinutes: app.config.syncFullMinutes },
    attachments: { maxBytes: app.config.syncAttachmentMaxBytes, perRun: app.config.syncAttachmentsPerRun },
  };
}

export default fp(
  async function sync(app: FastifyInstance) {
    await app.jobs.createQueue(SYNC_QUEUE, { name: SYNC_QUEUE, policy: 'stately' });
    /** Wakes this process's idle sync lanes (when it runs them). */
    let wakeLanes = () => {};
    // One job per connection (the stately queue keeps at most one waiting), not retried: the next
    // cycle is the retry.
    const job = (connectionId: string) => ({ name: SYNC_QUEUE, data: { connectionId }, singletonKey: connectionId, retryLimit: 0, expireInSeconds: SYNC_EXPIRE_SECONDS });
    app.decorate('queueSync', async (connectionId: string) => {
      await app.jobs.insert([job(connectionId)]);
      wakeLanes();
    });
    /** Queues the active connections last synced before `before` (all of them without it); how many. */
    const queueDue = async (before?: Date): Promise<number> => {
      // A connection never synced counts from its making (its first sync was queued then).
      const { rows } = await app.pg.query<{ id: string }>(
        `SELECT id::text FROM trb_connection WHERE status = 'active' AND ($1::timestamptz IS NULL OR coalesce(last_sync_at, created_at) < $1)`,
        [before ?? null],
      );
      // In statements of 1,000 jobs, not a round trip each.
      for (let i = 0; i < rows.length; i += 1000) await app.jobs.insert(rows.slice(i, i + 1000).map((r) => job(r.id)));
      wakeLanes();
      return rows.length;
    };

    await app.register(
      async (admin) => {
        admin.addHook('onRequest', adminOnly(app));
        admin.post('/sync', async () => ({ queued: await queueDue(), at: new Date().toISOString() }));
        admin.get('/sync', async (req, reply) => {
          const since = (req.query as { since?: string }).since;
          const from = since === undefined ? undefined : new Date(Date.parse(since));
          if (from && Number.isNaN(from.getTime())) return reply.code(400).send({ error: 'since must be an instant, such as 2026-11-29T10:00:00Z.' });
          const { rows } = await app.pg.query(
            `SELECT count(*) FILTER (WHERE status <> 'skipped')::int AS runs, count(*) FILTER (WHERE status = 'running')::int AS running, count(*) FILTER (WHERE status = 'succeeded')::int AS succeeded,
               count(*) FILTER (WHERE status = 'skipped')::int AS skipped, coalesce(sum(deleted), 0)::int AS deleted,
               count(*) FILTER (WHERE status = 'failed')::int AS failed, count(*) FILTER (WHERE status = 'needs_reauth')::int AS needs_reauth,
               min(started_at) AS first_started_at, max(finished_at) AS last_finished_at,
               coalesce(sum(fetched), 0)::int AS fetched, coalesce(sum(created), 0)::int AS created, coalesce(sum(updated), 0)::int AS updated,
               coalesce(sum(unchanged), 0)::int AS unchanged, coalesce(sum(requests), 0)::int AS requests,
               (SELECT count(*)::int FROM trb_connection WHERE status = 'active') AS active_connections
             FROM trb_sync_run WHERE started_at >= coalesce($1::timestamptz, now() - interval '1 hour')`,
            [from ?? null],
          );
          // The commonest errors, so that a failing cycle says why.
          const { rows: errors } = await app.pg.query(
            `SELECT error, count(*)::int AS runs FROM trb_sync_run WHERE started_at >= coalesce($1::timestamptz, now() - interval '1 hour') AND error IS NOT NULL AND status <> 'skipped'
             GROUP BY error ORDER BY count(*) DESC LIMIT 5`,
            [from ?? null],
          );
          return { ...rows[0], errors };
        });
      },
      { prefix: '/admin' },
    );
    if (!app.config.syncWorkers) return;

    const deps = syncDeps(app);
    await app.jobs.createQueue(WEBHOOK_QUEUE);
    // SYNC_CONCURRENCY lanes, each taking the next job as soon as it is done with the last (pg-boss's
    // own workers wait out their polling interval between jobs, even while jobs wait); an idle lane
    // looks every 2 s, or at once when this process queues a sync.
    let stopping = false;
    const alarm = new Alarm();
    wakeLanes = () => alarm.wake();
    const lane = async () => {
      while (!stopping) {
        let job: { id: string; data: { connectionId: string } } | undefined;
        try {
          job = (await app.jobs.fetch<{ connectionId: string }>(SYNC_QUEUE, { batchSize: 1 }))?.[0];
        } catch (err) {
          app.log.error({ err: String(err) }, 'the sync queue could not be read');
        }
        if (!job) {
          await alarm.sleep(IDLE_POLL_MS);
          continue;
        }
        try {
          const started = Date.now();
          const id = job.id;
          // The job ends as the run takes the connection's lock (the lock keeps other runs out).
          let completed = false;
          const run = await syncConnection(deps, job.data.connectionId, {
            onLocked: async () => {
              await app.jobs.complete(SYNC_QUEUE, id, { locked: new Date().toISOString() });
              completed = true;
            },
          });
          app.log[run.status === 'succeeded' || run.status === 'skipped' ? 'info' : 'warn']({ connection: job.data.connectionId, ...run, ms: Date.now() - started }, 'sync run');
          if (run.runId && (await announce(app, job.data.connectionId, run))) deliveries.wake();
          if (!completed) await app.jobs.complete(SYNC_QUEUE, job.id, run);
        } catch (err) {
          app.log.error({ connection: job.data.connectionId, err: String(err) }, 'sync job failed');
          await app.jobs.fail(SYNC_QUEUE, job.id, { message: String(err) }).catch(() => {});
        }
      }
    };
    // Webhook events, WEBHOOK_CONCURRENCY at once, one app's receiver holding at most its share.
    const deliveries = startDeliveries({ jobs: app.jobs, pool: app.pg, vault: app.vault, fetch: app.outbound.fetch, log: app.log, concurrency: app.config.webhookConcurrency });
    const lanes = Array.from({ length: app.config.syncConcurrency }, () => lane());
    app.addHook('onClose', async () => {
      stopping = true;
      wakeLanes();
      await Promise.all(lanes);
      await deliveries.stop();
    });

    const minutes = app.config.syncIntervalMinutes;
    await app.jobs.createQueue(SCHEDULE_QUEUE);
    // Every minute, the connections due (not synced within the interval) are queued: any interval
    // works, where a cron of `*/N` minutes could not say 90 minutes or 3 hours.
    await app.jobs.schedule(SCHEDULE_QUEUE, '* * * * *');
    await app.jobs.work(SCHEDULE_QUEUE, async () => {
      // Due: not synced in the last interval (less a little, so that a run that ended just after
      // the last tick is not skipped a whole interval).
      const queued = await queueDue(new Date(Date.now() - minutes * 60_000 + 10_000));
      app.log.info({ queued }, 'syncs queued');
    });
  },
  { name: 'sync', dependencies: ['db', 'core', 'auth', 'jobs', 'outbound'] },
);
