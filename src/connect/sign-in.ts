/**
 * A person's sign-in at a health system, under way (trb_connect_state): started when the connect
 * URL sends them to the system's authorize endpoint, taken once by the callback. PKCE S256, and a
 * signed single-use state that expires in 10 minutes, bound to the browser that started (RFC 9700
 * section 4.7.1): a random value in a cookie (plugins/connect.ts sets it) whose SHA-256 is kept
 * with the state. Finished, it stores the connection and queues its first sync.
 */
import { randomBytes } from 'node:crypto';
import * as oauth from 'oauth4webapi';
import type pg from 'pg';
import { sha256 } from '../auth/secrets.ts';
import type { Vault } from '../auth/vault.ts';
import { authorizeUrl, clientFor, exchangeCode, type ClientDeps } from './client.ts';
import { saveConnection } from './connections.ts';
import type { DirectorySystem } from './system.ts';
import * as statements from './sql.ts';

/** How long a sign-in may take, and how long its browser's cookie lives. */
export const STATE_SECONDS = 600;
/** The connect cookie: a random value per browser, shared by the sign-ins it has under way. */
export const BROWSER_COOKIE = 'trb_connect';
const BROWSER_VALUE = /^[A-Za-z0-9_-]{43}$/;

/** A sign-in taken by its callback. */
export interface PendingSignIn {
  appId: number;
  userId: string;
  systemId: string;
  /** The PKCE code verifier, sealed under the state. */
  codeVerifierSealed: Buffer;
  /** The app's own state, handed back to it. */
  appState: string | undefined;
}

/**
 * Starts a sign-in of the app's user at the system: the system's client is built first (a
 * ConnectError when it cannot be: nothing is kept then), the state kept, bound to the browser's
 * value (`hadBrowser`: the cookie it sent, kept when it is one of ours), and the authorize URL
 * made. The browser value is what the connect cookie holds from now on.
 */
export async function startSignIn(
  deps: ClientDeps,
  who: { appId: number; userId: string },
  system: DirectorySystem,
  callbackUrl: string,
  appState: string | undefined,
  hadBrowser: string | undefined,
): Promise<{ location: string; browser: string }> {
  const sc = await clientFor(deps, system);
  const nonce = randomBytes(32).toString('base64url');
  const state = `${nonce}.${deps.vault.sign(nonce)}`;
  const verifier = oauth.generateRandomCodeVerifier();
  // This browser's value: kept when it has one, so the sign-ins it starts side by side all finish.
  const browser = hadBrowser && BROWSER_VALUE.test(hadBrowser) ? hadBrowser : randomBytes(32).toString('base64url');
  await deps.pool.query(
    statements.insertConnectState(
      sha256(state),
      who.appId,
      who.userId,
      system.id,
      deps.vault.encrypt(verifier, state, 'connect-verifier'),
      appState ?? null,
      STATE_SECONDS,
      sha256(browser),
    ),
  );
  return { location: await authorizeUrl(sc, callbackUrl, state, verifier), browser };
}

/**
 * What a callback's state is: `forged` (not signed here, or changed), `other-browser` (live, but
 * bound to another browser than the one that sent `browser`), `gone` (expired, used, or unknown),
 * or the sign-in it finishes, spent.
 */
export type TakenSignIn = { pending: PendingSignIn } | { refused: 'forged' | 'other-browser' | 'gone' };

/** Takes the sign-in a callback finishes: used once, by the browser that started it. */
export async function takeSignIn(pool: pg.Pool, vault: Vault, state: string | undefined, browser: string | undefined): Promise<TakenSignIn> {
  const [nonce, mac] = (state ?? '').split('.');
  if (!state || !nonce || !mac || !signedHere(vault, nonce, mac)) return { refused: 'forged' };
  const bound = browser && BROWSER_VALUE.test(browser) ? sha256(browser) : null;
  // Used once, by the browser that started it: whatever happens next, this state is spent.
  const { rows } = await pool.query<{ app_id: number; user_id: string; system_id: string; code_verifier_sealed: Buffer; app_state: string | null }>(
    statements.takeConnectState(sha256(state), bound),
  );
  const r = rows[0];
  if (!r) {
    // Another browser (no cookie, or another's) is refused and spends nothing: deleting the state
    // here would let anyone holding the link cancel the person's sign-in, and the code is not
    // redeemed, so the browser that started can still finish with this same link.
    const live = await pool.query(statements.liveConnectState(sha256(state)));
    return { refused: live.rowCount ? 'other-browser' : 'gone' };
  }
  const appState = r.app_state ?? undefined;
  return { pending: { appId: r.app_id, userId: r.user_id, systemId: r.system_id, codeVerifierSealed: r.code_verifier_sealed, appState } };
}

/**
 * Whether `mac` is this server's signature of `nonce`: Vault.verify compares in constant time
 * (timingSafeEqual on equal lengths), under the current key or a previous one, so a sign-in under
 * way when ENCRYPTION_KEY rotates still finishes.
 */
const signedHere = (vault: Vault, nonce: string, mac: string): boolean => vault.ready && vault.verify(nonce, mac);

/**
 * Finishes a sign-in: the code of the callback (`callback`, the URL the system sent the person
 * to) exchanged for tokens (a ConnectError when the system refuses), the connection stored (made,
 * or made active again) and its first sync queued (`queueSync`: plugins/sync.ts's, a worker takes
 * it within seconds).
 */
export async function finishSignIn(
  deps: ClientDeps,
  pending: PendingSignIn,
  system: DirectorySystem,
  callback: { url: URL; state: string; redirectUri: string },
  queueSync: (connectionId: string) => Promise<void>,
): Promise<void> {
  const sc = await clientFor(deps, system);
  const verifier = deps.vault.decrypt(pending.codeVerifierSealed, callback.state, 'connect-verifier');
  const tokens = await exchangeCode(sc, callback.url, callback.state, callback.redirectUri, verifier);
  const connectionId = await saveConnection(deps.pool, deps.vault, { appId: pending.appId, userId: pending.userId, systemId: system.id }, tokens);
  // The first sync starts now (a worker takes it within seconds).
  await queueSync(connectionId);
}
