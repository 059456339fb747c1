/** Fixed SQL statements of apps' webhooks (trb_webhook: src/sync/webhooks.ts). */
import type { Sql } from '../../storage/sql.ts';

/** The app's webhook: its URL, its sealed secret, and the replaced one while it still signs. */
export function webhookOf(appId: number): Sql {
  return {
    text: /* SQL */ 'SELECT url, secret_sealed, CASE WHEN previous_until > now() THEN previous_secret_sealed END AS previous FROM trb_webhook WHERE app_id = $1',
    values: [appId],
  };
}

/** Sets the app's webhook; the secret it replaces signs beside the new one for `previousHours`. */
export function setWebhook(appId: number, url: string, secretSealed: Buffer, previousHours: number): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_webhook (app_id, url, secret_sealed) VALUES ($1, $2, $3)
     ON CONFLICT (app_id) DO UPDATE SET url = EXCLUDED.url, secret_sealed = EXCLUDED.secret_sealed, created_at = now(),
       previous_secret_sealed = trb_webhook.secret_sealed, previous_until = now() + make_interval(hours => $4)
     RETURNING previous_until`,
    values: [appId, url, secretSealed, previousHours],
  };
}
