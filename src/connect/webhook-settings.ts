/**
 * The app's webhook as its settings endpoints (PUT/GET/DELETE /connect/webhook) keep it: set with
 * src/sync/webhooks.ts's setWebhook (which issues the secret), shown without its secrets, removed.
 */
import type pg from 'pg';
import * as statements from './sql.ts';

/** The app's webhook: its URL, when it was set, and until when the secret it replaced still signs. */
export interface WebhookSettings {
  url: string;
  created_at: Date;
  previous_secret_until: Date | null;
}

/** The app's webhook settings, or undefined when it has none. */
export async function webhookSettings(pool: pg.Pool, appId: number): Promise<WebhookSettings | undefined> {
  const { rows } = await pool.query<WebhookSettings>(statements.webhookSettings(appId));
  return rows[0];
}

/** Removes the app's webhook (nothing when it has none). */
export async function removeWebhook(pool: pg.Pool, appId: number): Promise<void> {
  await pool.query(statements.deleteWebhook(appId));
}
