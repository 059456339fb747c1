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
 * Delivery: src/sync/webhook-deliveries.ts (queue `webhook`, retried with backoff, one app's
 * receiver holding at most its share of the deliveries).
 *
 * See: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
 */
import { randomBytes, randomUUID } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { WEBHOOK_QUEUE, WEBHOOK_RETRY, type WebhookJob } from '../jobs/queues.ts';
import { Webhook } from 'standardwebhooks';
import type { Vault } from '../auth/vault.ts';
import * as statements from './sql/webhooks.ts';

export type EventType = 'sync.succeeded' | 'sync.failed' | 'connection.needs_reauth';

/** The body of an event, as the spec recommends: what happened, when, and its details. */
export interface WebhookEvent {
  type: EventType;
  /** When it happened (ISO 8601). */
  timestamp: string;
  data: Record<string, unknown>;
}

/** How long the replaced secret keeps signing beside the new one. */
export const PREVIOUS_SECRET_HOURS = 24;

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

export interface Hook {
  url: string;
  /** The current secret, then the replaced one while it still signs. */
  secrets: string[];
}

/** The app's webhook (its URL and the secrets that sign), or undefined. */
export async function webhookOf(pool: pg.Pool, vault: Vault, appId: number): Promise<Hook | undefined> {
  const { rows } = await pool.query<{ url: string; secret_sealed: Buffer; previous: Buffer | null }>(statements.webhookOf(appId));
  const r = rows[0];
  if (!r) return undefined;
  const context = `webhook:${appId}`;
  return { url: r.url, secrets: [r.secret_sealed, ...(r.previous ? [r.previous] : [])].map((s) => vault.decrypt(s, context, 'webhook-secret')) };
}

/** Sets the app's webhook with a new secret, which it returns; the secret it replaces signs too for 24 hours. */
export async function setWebhook(pool: pg.Pool, vault: Vault, appId: number, url: string): Promise<{ secret: string; previousUntil: Date | null }> {
  const secret = newSecret();
  const { rows } = await pool.query<{ previous_until: Date | null }>(
    statements.setWebhook(appId, url, vault.encrypt(secret, `webhook:${appId}`, 'webhook-secret'), PREVIOUS_SECRET_HOURS),
  );
  return { secret, previousUntil: rows[0].previous_until };
}

/** Queues an event for the app's webhook, with the id it keeps on every attempt. */
export async function queueEvent(jobs: PgBoss, appId: number, type: EventType, data: Record<string, unknown>): Promise<string> {
  const id = `msg_${randomUUID().replaceAll('-', '')}`;
  const queued: WebhookJob = { appId, id, event: { type, timestamp: new Date().toISOString(), data } };
  await jobs.send(WEBHOOK_QUEUE, queued, WEBHOOK_RETRY);
  return id;
}
