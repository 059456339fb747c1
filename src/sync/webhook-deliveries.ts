/**
 * Delivery of webhook events (src/sync/webhooks.ts): events wait on pg-boss queue `webhook`,
 * retried with backoff until the receiver answers 2xx; one dispatcher per process runs up to
 * WEBHOOK_CONCURRENCY deliveries at once, each ended after 5 s, and gives one app at most a quarter
 * of them, so a receiver that hangs holds its own share and no one else's.
 *
 * See: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
 */
import type pg from 'pg';
import type { Job, PgBoss } from 'pg-boss';
import type { Vault } from '../auth/vault.ts';
import { Alarm } from '../event-loop.ts';
import { WEBHOOK_QUEUE, WEBHOOK_RETRY, type WebhookJob } from '../jobs/queues.ts';
import type { OutboundFetch } from '../net/outbound.ts';
import { signature, webhookOf, type Hook } from './webhooks.ts';

/** How long one delivery may take before it counts as failed (and is retried later). */
export const DELIVERY_TIMEOUT_MS = 5000;
/** A delivery's expected time for an app not yet heard from (then: the app's recent average). */
const FIRST_GUESS_MS = 250;
/** The furthest an event is put off while its app's receiver is slow. */
const MAX_DEFER_MS = 300_000;
const IDLE_POLL_MS = 1000;

/**
 * POSTs one event, signed now; throws (for the job to be retried) unless the receiver answers 2xx.
 * A redirect is an answer like any other non-2xx: not followed.
 */
export async function deliver(fetch: OutboundFetch, hook: Hook, queued: WebhookJob, signal: AbortSignal): Promise<void> {
  const body = JSON.stringify(queued.event);
  const now = new Date();
  const res = await fetch(hook.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'webhook-id': queued.id,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': signature(hook.secrets, queued.id, now, body),
    },
    body,
    redirect: 'manual',
    signal,
  });
  await res.body?.cancel().catch(() => {});
  if (res.status < 200 || res.status > 299) throw new Error(`the webhook answered ${res.status}`);
}

export interface DeliveryDeps {
  jobs: PgBoss;
  pool: pg.Pool;
  vault: Vault;
  fetch: OutboundFetch;
  log: { warn(o: object, msg: string): void; error(o: object, msg: string): void };
  /** Deliveries at once in this process; one app gets at most a quarter of them (at least 1). */
  concurrency: number;
}

/**
 * Starts this process's deliveries: one loop fetches as many queued events as there are free slots
 * (one query, not one per slot), starts each whose app is under its share, and puts the others back
 * until that app should have a slot again (a new job with the same event, so neither its
 * webhook-id nor its retries change).
 */
export function startDeliveries(d: DeliveryDeps): { wake(): void; stop(): Promise<void> } {
  const perApp = Math.max(1, Math.floor(d.concurrency / 4));
  const inFlight = new Map<number, number>();
  /** Per app: how long its deliveries take (moving average), and when its next put-off event is due. */
  const took = new Map<number, number>();
  const nextSlot = new Map<number, number>();
  let dueNext = Infinity;
  const running = new Set<Promise<void>>();
  const closing = new AbortController();
  const alarm = new Alarm();
  const sleep = (ms: number) => alarm.sleep(ms);
  const wake = () => alarm.wake();

  const one = async (job: Job<WebhookJob>) => {
    const started = Date.now();
    try {
      const hook = await webhookOf(d.pool, d.vault, job.data.appId);
      // Removed since: nowhere to send it, nothing to retry.
      // An event queued before webhook-ids (an upgrade) takes its job's id, which its retries keep too.
      const queued = { ...job.data, id: job.data.id ?? `msg_${job.id.replaceAll('-', '')}` };
      if (hook) await deliver(d.fetch, hook, queued, AbortSignal.any([closing.signal, AbortSignal.timeout(DELIVERY_TIMEOUT_MS)]));
      await d.jobs.complete(WEBHOOK_QUEUE, job.id);
    } catch (err) {
      // The URL is the app's and may carry a token in its query: not logged.
      d.log.warn({ app: job.data.appId, event: job.data.id, err: String(err) }, 'webhook delivery failed');
      await d.jobs.fail(WEBHOOK_QUEUE, job.id, { message: String(err).slice(0, 300) }).catch(() => {});
    } finally {
      const app = job.data.appId;
      took.set(app, 0.7 * (took.get(app) ?? FIRST_GUESS_MS) + 0.3 * (Date.now() - started));
    }
  };

  const loop = (async () => {
    while (!closing.signal.aborted) {
      const free = d.concurrency - running.size;
      // Full: woken when a delivery ends.
      if (free <= 0) {
        await sleep(IDLE_POLL_MS);
        continue;
      }
      let jobs: Job<WebhookJob>[] = [];
      try {
        jobs = await d.jobs.fetch<WebhookJob>(WEBHOOK_QUEUE, { batchSize: free });
      } catch (err) {
        d.log.error({ err: String(err) }, 'the webhook queue could not be read');
      }
      if (!jobs.length) {
        // Until the next poll, or sooner when an event put off is due.
        await sleep(Math.max(20, Math.min(IDLE_POLL_MS, dueNext - Date.now())));
        dueNext = Infinity;
        continue;
      }
      const later: Job<WebhookJob>[] = [];
      for (const job of jobs) {
        const app = job.data.appId;
        const n = inFlight.get(app) ?? 0;
        if (n >= perApp) {
          later.push(job);
          continue;
        }
        inFlight.set(app, n + 1);
        const p: Promise<void> = one(job).finally(() => {
          const left = inFlight.get(app)! - 1;
          if (left) inFlight.set(app, left);
          else inFlight.delete(app);
          running.delete(p);
          wake();
        });
        running.add(p);
      }
      if (later.length) {
        try {
          // Queued again before the originals complete: a crash between the two repeats an event
          // (same webhook-id, which receivers drop), never loses one.
          // Each due when its app should have a slot again (spaced by the app's delivery time over
          // its share), so that a hanging receiver's backlog is fetched about once per slot, not
          // every poll; and after other apps' fresh events (a lower priority).
          const now = Date.now();
          const rows = later.map((j) => {
            const app = j.data.appId;
            const at = Math.min(now + MAX_DEFER_MS, Math.max(nextSlot.get(app) ?? 0, now) + (took.get(app) ?? FIRST_GUESS_MS) / perApp);
            nextSlot.set(app, at);
            dueNext = Math.min(dueNext, at);
            return { data: j.data, ...WEBHOOK_RETRY, priority: -1, startAfter: new Date(at) };
          });
          await d.jobs.insert(WEBHOOK_QUEUE, rows);
          await d.jobs.complete(
            WEBHOOK_QUEUE,
            later.map((j) => j.id),
          );
        } catch (err) {
          d.log.error({ err: String(err) }, 'webhook events could not be put back');
        }
      }
    }
  })();

  return {
    wake,
    stop: async () => {
      closing.abort();
      wake();
      await loop;
      await Promise.all(running);
    },
  };
}
