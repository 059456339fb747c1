/**
 * Whether an origin is one some app registered a redirect URI on: the browser origins CORS lets
 * call the OAuth and connect endpoints (plugins/cors.ts).
 */
import type pg from 'pg';
import { redirectUrisStartingWith } from './sql/apps.ts';

/** The SQL narrows by prefix; URL compares origins exactly (case, default ports). */
export async function isRegisteredOrigin(pool: pg.Pool, origin: string): Promise<boolean> {
  const { rows } = await pool.query<{ uri: string }>(redirectUrisStartingWith(origin.replace(/:\d+$/, '')));
  return rows.some((r) => URL.canParse(r.uri) && new URL(r.uri).origin === origin);
}
