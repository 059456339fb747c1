/**
 * Webhook events to apps: a sync that finished or failed, a connection that needs the person to
 * connect again. The body is JSON; `Tributary-Signature: t=<unix seconds>,v1=<hex>` carries
 * HMAC-SHA256 over `<t>.<body>` with the app's webhook secret, so a receiver checks both who sent
 * it and when (and refuses old ones: replays). Delivered by a pg-boss job that is retried with
 * backoff until the receiver answers 2xx.
 */
import { createHmac } from 'node:crypto';
import type pg from 'pg';
import type { Vault } from '../auth/vault.ts';

export type EventType = 'sync.succeeded' | 'sync.failed' | 'connection.needs_reauth';

export interface WebhookEvent {
  type: EventType;
  created_at: string;
  connection_id: string;
  oneup_user_id: number;
  app_user_id: string;
  system_id: string;
  run?: Record<string, unknown>;
}

export function signature(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** The app's webhook (its URL and secret), or undefined. */
export async function webhookOf(pool: pg.Pool, vault: Vault, appId: number): Promise<{ url: string; secret: string } | undefined> {
  const { rows } = await pool.query<{ url: string; secret_sealed: Buffer }>('SELECT url, secret_sealed FROM trb_webhook WHERE app_id = $1', [appId]);
  return rows[0] && { url: rows[0].url, secret: vault.decrypt(rows[0].secret_sealed, `webhook:${appId}`, 'webhook-secret') };
}

export async function setWebhook(pool: pg.Pool, vault: Vault, appId: number, url: string, secret: string): Promise<void> {
  await pool.query(
    'INSERT INTO trb_webhook (app_id, url, secret_sealed) VALUES ($1, $2, $3) ON CONFLICT (app_id) DO UPDATE SET url = EXCLUDED.url, secret_sealed = EXCLUDED.secret_sealed, created_at = now()',
    [appId, url, vault.encrypt(secret, `webhook:${appId}`, 'webhook-secret')],
  );
}

/** POSTs one event; throws (for the job to be retried) unless the receiver answers 2xx. */
export async function deliver(hook: { url: string; secret: string }, event: WebhookEvent): Promise<void> {
  const body = JSON.stringify(event);
  const res = await fetch(hook.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'tributary-signature': signature(hook.secret, Math.floor(Date.now() / 1000), body) },
    body,
    redirect: 'manual',
    signal: AbortSignal.timeout(10_000),
  });
  await res.body?.cancel();
  if (res.status < 200 || res.status > 299) throw new Error(`the webhook answered ${res.status}`);
}
