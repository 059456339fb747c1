/**
 * The demo app's fixed statements, as small functions returning { text, values }.
 */
import type { Sql } from '../storage/sql.ts';

/** The demo app's secret (as its SHA-256) and redirect URI, kept in step with the key and BASE_URL. */
export const updateDemoApp = (appId: number, secretSha256: Buffer, redirectUris: string[]): Sql => ({
  text: 'UPDATE trb_app SET secret_sha256 = $2, redirect_uris = $3 WHERE id = $1',
  values: [appId, secretSha256, redirectUris],
});
