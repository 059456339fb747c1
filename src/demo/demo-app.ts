/**
 * The built-in demo app (client_id `tributary-demo`) that plays an app's back end at `/demo`
 * (plugins/demo.ts), and the user it keeps in a signed cookie. Its secret is derived from the
 * encryption key, so every process knows it; the demo calls this server's API as an app's back
 * end would (`DemoApi`: in-process requests).
 */
import type pg from 'pg';
import type { AuthStore } from '../auth/store.ts';
import { sha256 } from '../auth/secrets.ts';
import type { Vault } from '../auth/vault.ts';
import * as sql from './sql.ts';

export const DEMO_CLIENT_ID = 'tributary-demo';

/** A call of this server's API, as the demo app's back end makes it: a form body when `payload` is given. */
export type DemoApi = (
  method: 'GET' | 'POST',
  url: string,
  payload?: Record<string, string>,
  headers?: Record<string, string>,
) => Promise<{ status: number; body: Record<string, unknown> & unknown[] }>;

export interface DemoCredentials {
  client_id: string;
  client_secret: string;
}

/** The demo app's secret under this key. */
export const demoSecret = (vault: Vault): string => vault.sign('the demo app secret');

export interface DemoAppDeps {
  pool: pg.Pool;
  auth: Pick<AuthStore, 'appByClientId' | 'createApp'>;
}

/**
 * The demo app, with the secret this key derives (kept in step on every start). Processes that
 * start together on a new database may each make it: one does, the others find it made.
 */
export async function ensureDemoApp(deps: DemoAppDeps, secret: string, redirect: string): Promise<void> {
  let existing = await deps.auth.appByClientId(DEMO_CLIENT_ID);
  if (!existing) {
    try {
      await deps.auth.createApp({ name: 'Tributary demo app', clientId: DEMO_CLIENT_ID, clientSecret: secret, redirectUris: [redirect] });
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '23505') throw err;
      existing = await deps.auth.appByClientId(DEMO_CLIENT_ID);
      if (!existing) throw err;
    }
  }
  await deps.pool.query(sql.updateDemoApp(existing.id, sha256(secret), [redirect]));
}

/**
 * Makes the user with the user-management API; false when the API refused it (one that exists
 * already is fine: the demo signs in as them).
 */
export async function createDemoUser(api: DemoApi, creds: DemoCredentials, appUserId: string): Promise<boolean> {
  const made = await api('POST', '/user-management/v1/user', { ...creds, app_user_id: appUserId });
  return !(made.status !== 200 || (made.body.error && made.body.error !== 'this user already exists'));
}

/** The cookie's value for a user: their app_user_id and its signature. */
export const signedUser = (vault: Vault, appUserId: string): string => `${appUserId}|${vault.sign(appUserId)}`;

/** The user a cookie's value names, when its signature holds. */
export function verifiedUser(vault: Vault, value: string): string | undefined {
  const [appUserId, mac] = value.split('|');
  return appUserId && mac && vault.verify(appUserId, mac) ? appUserId : undefined;
}

export interface DemoUser {
  appUserId: string;
  oneupUserId: number;
  token: string;
}

/** A fresh access token for the user, as an app gets one: an auth code from the user-management API, exchanged at /oauth2/token. */
export async function demoUserToken(api: DemoApi, creds: DemoCredentials, appUserId: string): Promise<DemoUser | undefined> {
  const code = await api('POST', '/user-management/v1/user/auth-code', { ...creds, app_user_id: appUserId });
  if (typeof code.body.code !== 'string') return undefined;
  const token = await api('POST', '/oauth2/token', { ...creds, grant_type: 'authorization_code', code: code.body.code });
  return { appUserId, oneupUserId: Number(code.body.oneup_user_id), token: String(token.body.access_token) };
}
