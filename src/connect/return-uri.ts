/**
 * The connect flow's pending sign-ins (trb_connect_state), as the SMART pages read them.
 */
import type pg from 'pg';
import { sha256 } from '../auth/secrets.ts';
import * as statements from './sql.ts';

/**
 * Where the callback of a pending connect state will send the person on to: the app's registered
 * redirect URI (as backToApp). The consent page of a sandbox, whose own redirect_uri is this
 * server's /connect/callback, names it in its form-action, since Chromium checks that hop too.
 */
export async function connectReturnUri(pool: pg.Pool, state: string): Promise<string | undefined> {
  const { rows } = await pool.query<{ uri: string | null }>(statements.connectReturnUri(sha256(state)));
  return rows[0]?.uri ?? undefined;
}
