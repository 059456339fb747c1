/**
 * Webhook events to apps (a sync that changed something, a sync that failed, a connection that
 * needs the person again), in the Standard Webhooks format: a JSON body `{ type, timestamp, data }`
 * POSTed with `webhook-id` (the event's, the same on every attempt, so a receiver drops repeats),
 * `webhook-timestamp` (the attempt's, unix seconds, so a receiver refuses replays) and
 * `webhook-signature` (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`). The secret is the
 * server's (`whsec_` + base64 of 32 random bytes), shown once when the webhook is set; a new PUT
 * issues a new one, and the one it replaces signs beside it (a second signature, space-separated, as
 * the spec allows) for 24 hours, while the app moves its receiver over.
 *
 * Delivery: events wait on pg-boss queue `webhook`, retried with backoff until the receiver answers
 * 2xx; one dispatcher per process runs up to WEBHOOK_CONCURRENCY deliveries at once, each ended
 * after 5 s, and gives one app at most a quarter of them, so a receiver that hangs holds its own
 * share and no one else's.
 *
 * See: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
 */
import { randomBytes, randomUUID } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import type pg from 'pg';
import type PgBoss from 'pg-boss';
import { Webhook } from 'standardwebhooks';
import type { Vault } from '../auth/vault.ts';
import type { OutboundFetch } from '../net/outbound.ts';
import { Alarm } from '../event-loop.ts';

export const WEBHOOK_QUEUE = 'webhook';
export type EventType = 'sync.succeeded' | 'sync.failed' | 'connection.needs_reauth';

/** The body of an event, as the spec recommends: what happened, when, and its details. */
export interface WebhookEvent {
  type: EventType;
  /** When it happened (ISO 8601). */
  timestamp: string;
  data: Record<string, unknown>;
}

/** A queued event: `id` is its webhook-id, the same on every attempt. */
export interface QueuedEvent {
  appId: number;
  id: string;
  event: WebhookEvent;
}

/** How long the replaced secret keeps signing beside the new one. */
export const PREVIOUS_SECRET_HOURS = 24;
/** How long one delivery may take before it counts as failed (and is retried later). */
export const DELIVERY_TIMEOUT_MS = 5000;
/** Tried until the receiver takes it: 1 s, 2 s, 4 s ... apart, 8 times (about 4 minutes). */
const RETRY = { retryLimit: 8, retryDelay: 1, retryBackoff: true, expireInSeconds: 60 } as const;
/** A delivery's expected time for an app not yet heard from (then: the app's recent average). */
const FIRST_GUESS_MS = 250;
/** The furthest an event is put off while its app's receiver is slow. */
const MAX_DEFER_MS = 300_000;
const IDLE_POLL_MS = 1000;

/** A new secret, in the format the spec's libraries take (`whsec_` + base64 of 32 random bytes). */
export function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/**
 * Why a webhook URL is refused, or undefined: https, or http to a loopback host (development), or
 * http anywhere when the operator allows it (WEBHOOK_ALLOW_HTTP).
 */
export function urlProblem(raw: string, allowHttp: boolean): string | undefined {
  const url = raw.length <= 2000 && URL.canParse(raw) ? new URL(raw) : undefined;
  if (!url || !/^https?:$/.test(url.protocol)) return 'url is the https URL events are POSTed to.';
  if (url.username || url.password) return 'url must not carry a user name or password.';
  if (url.protocol === 'http:' && !allowHttp && !isLoopback(url.hostname)) {
    return 'url must be https: plain http is accepted only to a loopback host (localhost, 127.0.0.1, ::1), unless the server sets WEBHOOK_ALLOW_HTTP=true.';
  }
  return undefined;
}

function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  // RFC 6761 §6.3: localhost and its subdomains are loopback.
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  return ipaddr.isValid(host) && ipaddr.process(host).range() === 'loopback';
}

/** The webhook-signature header: one `v1,<base64>` per secret, space-separated. */
export function signature(secrets: readonly string[], id: string, at: Date, body: string): string {
  // A secret set before they were issued (an app's own) is its raw bytes, as the spec's libraries read `format: 'raw'`.
  return secrets.map((s) => (s.startsWith('whsec_') ? new Webhook(s) : new Webhook(s, { format: 'raw' })).sign(id, at, body)).join(' ');
}

interface Hook {
  url: string;
  /** The current secret, then the replaced one while it still signs. */
  secrets: string[];
}

/** The app's webhook (its URL and the secrets that sign), or undefined. */
export async function webhookOf(pool: pg.Pool, vault: Vault, appId: number): Promise<Hook | undefined> {
  const { rows } = await pool.query<{ url: string; secret_sealed: Buffer; previous: Buffer | null }>(
    'SELECT url, secret_sealed, CASE WHEN previous_until > now() THEN previous_secret_sealed END AS previous FROM trb_webhook WHERE app_id = $1',
    [appId],
  );
  const r = rows[0];
  if (!r) return undefined;
  const context = `webhook:${appId}`;
  return { url: r.url, secrets: [r.secret_sealed, ...(r.previous ? [r.previous] : [])].map((s) => vault.decrypt(s, context, 'webhook-secret')) };
}

/** Sets the app's webhook with a new secret, which it returns; the secret it replaces signs too for 24 hours. */
export async function setWebhook(pool: pg.Pool, vault: Vault, appId: number, url: string): Promise<{ secret: string; previousUntil: Date | null }> {
  const secret = newSecret();
  const { rows } = await pool.query<{ previous_until: Date | null }>(
    /* SQL */ `INSERT INTO trb_webhook (app_id, url, secret_sealed) VALUES ($1, $2, $3)
     ON CONFLICT (app_id) DO UPDATE SET url = EXCLUDED.url, secret_sealed = EXCLUDED.secret_sealed, created_at = now(),
       previous_secret_sealed = trb_webhook.secret_sealed, previous_until = now() + make_interval(hours => $4)
     RETURNING previous_until`,
    [appId, url, vault.encrypt(secret, `webhook:${appId}`, 'webhook-secret'), PREVIOUS_SECRET_HOURS],
  );
  return { secret, previousUntil: rows[0].previous_until };
}

/** Queues an event for the app's webhook, with the id it keeps on every attempt. */
export async function queueEvent(jobs: PgBoss, appId: number, type: EventType, data: Record<string, unknown>): Promise<string> {
  const id = `msg_${randomUUID().replaceAll('-', '')}`;
  const queued: QueuedEvent = { appId, id, event: { type, timestamp: new Date().toISOString(), data } };
  await jobs.send(WEBHOOK_QUEUE, queued, RETRY);
  return id;
}

/**
 * POSTs one event, signed now; throws (for the job to be retried) unless the receiver answers 2xx.
 * A redirect is an answer like any other non-2xx: not followed.
 */
export async function deliver(fetch: OutboundFetch, hook: Hook, queued: QueuedEvent, signal: AbortSignal): Promise<void> {
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

  const one = async (job: PgBoss.Job<QueuedEvent>) => {
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
      let jobs: PgBoss.Job<QueuedEvent>[] = [];
      try {
        jobs = (await d.jobs.fetch<QueuedEvent>(WEBHOOK_QUEUE, { batchSize: free })) ?? [];
      } catch (err) {
        d.log.error({ err: String(err) }, 'the webhook queue could not be read');
      }
      if (!jobs.length) {
        // Until the next poll, or sooner when an event put off is due.
        await sleep(Math.max(20, Math.min(IDLE_POLL_MS, dueNext - Date.now())));
        dueNext = Infinity;
        continue;
      }
      const later: PgBoss.Job<QueuedEvent>[] = [];
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
            return { name: WEBHOOK_QUEUE, data: j.data, ...RETRY, priority: -1, startAfter: new Date(at) };
          });
          await d.jobs.insert(rows);
          await d.jobs.complete(WEBHOOK_QUEUE, later.map((j) => j.id));
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
