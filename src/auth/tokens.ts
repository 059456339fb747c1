/**
 * Access and refresh tokens, in PostgreSQL (migration 0003): issued, refreshed (with rotation),
 * introspected and revoked. Only hashes of tokens are stored; the values are returned once, when
 * made. A revocation NOTIFYs every process in its transaction and empties this one's TokenCache.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { inTransaction } from '../storage/transaction.ts';
import type { App } from './apps.ts';
import { ACCESS_TOKEN_SECONDS, REFRESH_TOKEN_SECONDS } from './lifetimes.ts';
import { OAuthError } from './oauth-error.ts';
import { newSecret, sha256 } from './secrets.ts';
import * as sql from './sql/tokens.ts';
import type { TokenCache } from './token-cache.ts';

/** Who a token or a set of client credentials acts as. userId null: the app, for all its users. */
export interface Access {
  app: App;
  userId: string | null;
  scope: string;
}

export interface TokenSet {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token?: string;
  scope: string;
  /** SMART launch context: the id of the user's Patient. */
  patient?: string;
  /** OpenID Connect, when `openid` was granted. */
  id_token?: string;
}

/** What the token functions work with: the pool, and the memory a revocation empties. */
export interface TokenDeps {
  pool: pg.Pool;
  cache: TokenCache;
}

/** The tokens of a sign-in: an access token, and a refresh token when `withRefresh`, stored in `db`. */
export async function issue(
  db: pg.Pool | pg.PoolClient,
  app: App,
  userId: string | null,
  scope: string,
  family: string,
  withRefresh: boolean,
  patientId: string | null,
): Promise<TokenSet> {
  const access = newSecret();
  const refresh = withRefresh ? newSecret() : undefined;
  const seconds = app.accessTokenSeconds ?? ACCESS_TOKEN_SECONDS;
  const rows: [token: string, kind: string, seconds: number][] = [[access, 'access', seconds]];
  if (refresh) rows.push([refresh, 'refresh', REFRESH_TOKEN_SECONDS]);
  const [hashes, kinds, lifetimes] = [rows.map((r) => sha256(r[0])), rows.map((r) => r[1]), rows.map((r) => r[2])];
  await db.query(sql.insertTokens({ hashes, kinds, family, appId: app.id, userId, scope, seconds: lifetimes, patientId }));
  return {
    access_token: access,
    token_type: 'Bearer',
    expires_in: seconds,
    ...(refresh ? { refresh_token: refresh } : {}),
    scope,
    ...(patientId ? { patient: patientId } : {}),
  };
}

/**
 * refresh_token with rotation: the token is spent; a spent one presented again ends its family.
 * An app whose refresh tokens do not rotate (refreshRotates false) gets a new access token and
 * the same refresh token back, good again until it expires.
 */
export async function refresh(deps: TokenDeps, app: App, refreshToken: string): Promise<TokenSet> {
  const result = await inTransaction(deps.pool, async (c) => {
    const { rows } = await c.query<{
      family: string;
      user_id: string | null;
      scope: string;
      live: boolean;
      revoked: boolean;
      patient_id: string | null;
    }>(sql.refreshForUpdate(sha256(refreshToken), app.id));
    const r = rows[0];
    if (!r || !r.live) return new OAuthError('invalid_grant', 'The refresh token is unknown or expired; sign in again.');
    if (r.revoked) {
      // Reuse of a spent token: someone else may hold it. Everything of that sign-in stops.
      await c.query(sql.revokeFamily(r.family));
      await c.query(sql.notifyRevoked());
      return 'reused' as const;
    }
    if (!app.refreshRotates) return { ...(await issue(c, app, r.user_id, r.scope, r.family, false, r.patient_id)), refresh_token: refreshToken };
    await c.query(sql.revokeToken(sha256(refreshToken)));
    return issue(c, app, r.user_id, r.scope, r.family, true, r.patient_id);
  });
  if (result === 'reused') {
    deps.cache.forget();
    throw new OAuthError('invalid_grant', 'The refresh token was already used; every token of this sign-in is now revoked. Sign in again.');
  }
  if (result instanceof OAuthError) throw result;
  return result;
}

/**
 * client_credentials: an app token, for all of the app's users, with the system scopes granted
 * (src/auth/token-grant.ts decides them); no refresh token.
 */
export async function clientToken(pool: pg.Pool, app: App, scope: string): Promise<TokenSet> {
  return issue(pool, app, null, scope, randomUUID(), false, null);
}

/** RFC 7662: what the app may know of one of its own tokens (inactive for any other). */
export async function introspect(pool: pg.Pool, app: App, token: string): Promise<Record<string, unknown>> {
  const { rows } = await pool.query<{ kind: string; user_id: string | null; scope: string; exp: number; iat: number; app_user_id: string | null }>(
    sql.introspect(sha256(token), app.id),
  );
  const r = rows[0];
  if (!r) return { active: false };
  return {
    active: true,
    scope: r.scope,
    client_id: app.clientId,
    token_type: r.kind === 'access' ? 'Bearer' : 'refresh_token',
    exp: Number(r.exp),
    iat: Number(r.iat),
    ...(r.user_id ? { sub: r.user_id, oneup_user_id: r.user_id, app_user_id: r.app_user_id } : {}),
  };
}

/** RFC 7009: revokes one of the app's tokens (a refresh token takes its family along). */
export async function revoke(deps: TokenDeps, app: App, token: string): Promise<void> {
  await inTransaction(deps.pool, async (c) => {
    await c.query(sql.revokeOfApp(sha256(token), app.id));
    await c.query(sql.notifyRevoked());
  });
  deps.cache.forget();
}

/**
 * Ends every live token of one kind that an app issued, at once (a sandbox system's fault
 * switches: "access tokens expire now", "refresh tokens are revoked"); answers how many.
 */
export async function endTokens(deps: TokenDeps, appId: number, kind: 'access' | 'refresh'): Promise<number> {
  const n = await inTransaction(deps.pool, async (c) => {
    const { rowCount } = await c.query(sql.endTokens(appId, kind));
    await c.query(sql.notifyRevoked());
    return rowCount ?? 0;
  });
  deps.cache.forget();
  return n;
}
