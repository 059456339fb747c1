/**
 * Apps (tenants), their users, authorization codes and tokens, in PostgreSQL (migration 0003).
 * Only hashes of secrets, codes and tokens are stored; the values are returned once, when made.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import { Coalescer } from '../storage/coalescer.ts';
import { inTransaction } from '../storage/transaction.ts';
import { hashPassword, newSecret, pkceChallenge, sameHash, sha256, verifyPassword } from './secrets.ts';

export interface App {
  id: number;
  clientId: string;
  /** A public client (client-public): no secret; it proves itself with PKCE only. */
  public: boolean;
  name: string;
  redirectUris: string[];
  scopes: string[];
  createdAt: Date;
  /** How the app must authenticate at the token endpoint; null: a secret, either way (or none when public). */
  tokenAuthMethod: TokenAuthMethod | null;
  /** The public keys of a private_key_jwt client (a JWK Set). */
  jwks: { keys: object[] } | null;
  /** Its access tokens' lifetime; null: ACCESS_TOKEN_SECONDS. */
  accessTokenSeconds: number | null;
  /** Whether a refresh spends the refresh token for a new one (true for every app but a sandbox that does otherwise). */
  refreshRotates: boolean;
}

export type TokenAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

export interface NewApp {
  name: string;
  redirectUris?: string[];
  scopes?: string[];
  public?: boolean;
  clientId?: string;
  clientSecret?: string;
  tokenAuthMethod?: TokenAuthMethod | null;
  jwks?: { keys: object[] } | null;
  accessTokenSeconds?: number | null;
  /** Default true. */
  refreshRotates?: boolean;
}

export interface User {
  /** 1upHealth's oneup_user_id: our numeric id, as a string. */
  id: string;
  appId: number;
  appUserId: string;
  active: boolean;
}

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

/** What a SMART code was granted for, beyond the user and scope. */
export interface SmartGrant {
  redirectUri: string;
  codeChallenge: string;
  nonce: string | null;
  patientId: string | null;
}

/** Who a code was granted to, for the id_token the caller may add. */
export interface Granted {
  userId: string;
  scope: string;
  nonce: string | null;
  patientId: string | null;
}

/** An authorization request being signed in to and approved (see /oauth2/authorize). */
export interface AuthzRequest {
  appId: number;
  redirectUri: string;
  scope: string;
  state: string;
  codeChallenge: string;
  nonce: string | null;
  userId: string | null;
}

export const AUTHZ_REQUEST_SECONDS = 600;
/** Valid access tokens are remembered this long at most (and never past their expiry). */
const ACCESS_CACHE_MS = 60_000;
const ACCESS_CACHE_MAX = 100_000;
/** Sent in the transaction of every revocation; see AuthStore.listen. */
const NOTIFY_REVOKED = "SELECT pg_notify('trb_auth', 'revoked')";
/** A SHA-256 no secret hashes to (in practice): what an unknown client_id's secret is compared with. */
const NO_SECRET = Buffer.alloc(32);
/** Wrong passwords after which one sign-in request ends. */
export const AUTHZ_REQUEST_FAILURES = 5;

export const ACCESS_TOKEN_SECONDS = 7200;
export const REFRESH_TOKEN_SECONDS = 90 * 24 * 3600;
export const CODE_SECONDS = 600;
/** The scope of tokens made by the user-management flow: the user's own data, all of it. */
export const USER_SCOPE = 'user/*.*';

/** An app as the CLI and the admin API show it (never its secret). */
export function describeApp(a: App) {
  return { client_id: a.clientId, public: a.public, name: a.name, redirect_uris: a.redirectUris, scopes: a.scopes, created_at: a.createdAt.toISOString() };
}

/** What is wrong with a list of redirect URIs (each must be an http(s) URL), or undefined. */
export function redirectUriProblem(uris: readonly string[]): string | undefined {
  const bad = uris.find((u) => u.length > 2000 || !URL.canParse(u) || !/^https?:$/.test(new URL(u).protocol));
  return bad === undefined ? undefined : `redirect URI ${bad.slice(0, 100)} is not an http(s) URL.`;
}

type AppRow = {
  id: number;
  client_id: string;
  public: boolean;
  name: string;
  redirect_uris: string[];
  scopes: string[];
  created_at: Date;
  token_auth_method: TokenAuthMethod | null;
  jwks: { keys: object[] } | null;
  access_token_seconds: number | null;
  refresh_rotates: boolean;
};
const APP_COLUMNS = 'id, client_id, public, name, redirect_uris, scopes, created_at, token_auth_method, jwks, access_token_seconds, refresh_rotates';
const toApp = (r: AppRow): App => ({
  id: r.id,
  clientId: r.client_id,
  public: r.public,
  name: r.name,
  redirectUris: r.redirect_uris,
  scopes: r.scopes,
  createdAt: r.created_at,
  tokenAuthMethod: r.token_auth_method,
  jwks: r.jwks,
  accessTokenSeconds: r.access_token_seconds,
  refreshRotates: r.refresh_rotates,
});
type UserRow = { id: string; app_id: number; app_user_id: string; active: boolean };
const toUser = (r: UserRow): User => ({ id: r.id, appId: r.app_id, appUserId: r.app_user_id, active: r.active });

/** RFC 6749 section 5.2 errors of the token endpoint. */
export class OAuthError extends Error {
  readonly error: string;
  readonly status: number;
  constructor(error: string, description: string, status = 400) {
    super(description);
    this.error = error;
    this.status = status;
  }
}

export class AuthStore {
  private readonly pool: pg.Pool;
  private readonly accessLookups: Coalescer<null, Buffer, { access: Access; expiresAt: number } | undefined>;
  private readonly cache = new Map<string, { access: Access; until: number }>();
  /** Moves on at every revocation heard: a lookup begun before one is not kept. */
  private generation = 0;
  private listening = false;
  private dummy: Promise<string> | undefined;

  constructor(pool: pg.Pool) {
    this.pool = pool;
    this.accessLookups = new Coalescer((_none: null, hashes: Buffer[]) => this.accessMany(hashes), 200, () => 'tokens');
  }

  // --- apps --------------------------------------------------------------------------------

  /**
   * A new app and its secret (none for a public app: it has nothing to keep secret). `clientId`
   * and `clientSecret` are chosen by the server unless given (the sandbox systems fix theirs);
   * `db`: a transaction's client, to make the app in it.
   */
  async createApp(input: NewApp, db: pg.Pool | pg.PoolClient = this.pool): Promise<{ app: App; clientSecret: string }> {
    const clientSecret = input.clientSecret ?? newSecret();
    const { rows } = await db.query<AppRow>(
      `INSERT INTO trb_app (client_id, secret_sha256, name, redirect_uris, scopes, public, token_auth_method, jwks, access_token_seconds, refresh_rotates)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ${APP_COLUMNS}`,
      [
        input.clientId ?? randomBytes(16).toString('hex'),
        sha256(clientSecret),
        input.name,
        input.redirectUris ?? [],
        input.scopes ?? [],
        input.public ?? false,
        input.tokenAuthMethod ?? null,
        input.jwks ?? null,
        input.accessTokenSeconds ?? null,
        input.refreshRotates ?? true,
      ],
    );
    return { app: toApp(rows[0]), clientSecret: input.public || input.tokenAuthMethod === 'private_key_jwt' ? '' : clientSecret };
  }

  /**
   * The app a private_key_jwt client assertion (RFC 7523) proves, or undefined: signed by a key
   * of the app's JWK Set, iss and sub its client_id, aud one of `audiences` (the token endpoint),
   * unexpired, at most 5 minutes old, and its jti never seen before.
   */
  async authenticateAssertion(assertion: string, audiences: string[]): Promise<App | undefined> {
    let clientId: string | undefined;
    try {
      clientId = decodeJwt(assertion).iss;
    } catch {
      return undefined;
    }
    const client = clientId && clientId.length <= 200 ? await this.appByClientId(clientId) : undefined;
    if (!client || client.tokenAuthMethod !== 'private_key_jwt' || !client.jwks) return undefined;
    try {
      const { payload } = await jwtVerify(assertion, createLocalJWKSet(client.jwks as JSONWebKeySet), {
        issuer: client.clientId,
        subject: client.clientId,
        audience: audiences,
        algorithms: ['RS384', 'ES384', 'RS256', 'ES256'],
        maxTokenAge: '5m',
        requiredClaims: ['jti', 'exp'],
      });
      const { rowCount } = await this.pool.query(
        'INSERT INTO trb_client_assertion (jti_sha256, app_id, expires_at) VALUES ($1, $2, to_timestamp($3)) ON CONFLICT DO NOTHING',
        [sha256(String(payload.jti)), client.id, payload.exp],
      );
      return rowCount === 1 ? client : undefined;
    } catch {
      return undefined;
    }
  }

  async listApps(): Promise<App[]> {
    const { rows } = await this.pool.query<AppRow>(`SELECT ${APP_COLUMNS} FROM trb_app ORDER BY id`);
    return rows.map(toApp);
  }

  async appById(id: number): Promise<App | undefined> {
    const { rows } = await this.pool.query<AppRow>(`SELECT ${APP_COLUMNS} FROM trb_app WHERE id = $1`, [id]);
    return rows[0] && toApp(rows[0]);
  }

  async appByClientId(clientId: string): Promise<App | undefined> {
    const { rows } = await this.pool.query<AppRow>({ name: 'trb_app_by_client', text: `SELECT ${APP_COLUMNS} FROM trb_app WHERE client_id = $1`, values: [clientId] });
    return rows[0] && toApp(rows[0]);
  }

  /** The app whose credentials these are, or undefined (same time whether the id or the secret is wrong). */
  async authenticateApp(clientId: string, clientSecret: string): Promise<App | undefined> {
    const { rows } = await this.pool.query<AppRow & { secret_sha256: Buffer }>({
      name: 'trb_app_auth',
      text: `SELECT ${APP_COLUMNS}, secret_sha256 FROM trb_app WHERE client_id = $1`,
      values: [clientId],
    });
    const given = sha256(clientSecret);
    // An unknown client_id is compared too (with a hash no secret has), so both cost the same.
    const same = sameHash(rows[0]?.secret_sha256 ?? NO_SECRET, given);
    return same && rows.length > 0 && !rows[0].public ? toApp(rows[0]) : undefined;
  }

  /** A new secret for the app; the old one stops working at once. Undefined: no such app, or a public one. */
  async rotateSecret(clientId: string): Promise<string | undefined> {
    const secret = newSecret();
    const { rowCount } = await this.pool.query('UPDATE trb_app SET secret_sha256 = $2 WHERE client_id = $1 AND NOT public', [clientId, sha256(secret)]);
    return rowCount ? secret : undefined;
  }

  /** Deletes the app, its users, tokens and every resource of its partition. */
  async deleteApp(clientId: string): Promise<boolean> {
    return inTransaction(this.pool, async (c) => {
      const { rows } = await c.query<{ id: number }>('DELETE FROM trb_app WHERE client_id = $1 RETURNING id', [clientId]);
      if (!rows.length) return false;
      await c.query(NOTIFY_REVOKED);
      const tables = await c.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() AND column_name = 'partition_id' AND (table_name LIKE 'hfj\\_%' OR table_name LIKE 'trb\\_%')`,
      );
      for (const { table_name } of tables.rows) await c.query(`DELETE FROM ${table_name} WHERE partition_id = $1`, [rows[0].id]);
      return true;
    }).then((deleted) => {
      if (deleted) this.forget();
      return deleted;
    });
  }

  // --- users -------------------------------------------------------------------------------

  /** A new user of the app; undefined when the app already has one with this app_user_id. */
  async createUser(appId: number, appUserId: string): Promise<User | undefined> {
    const { rows } = await this.pool.query<UserRow>(
      'INSERT INTO trb_user (app_id, app_user_id) VALUES ($1, $2) ON CONFLICT (app_id, app_user_id) DO NOTHING RETURNING id, app_id, app_user_id, active',
      [appId, appUserId],
    );
    return rows[0] && toUser(rows[0]);
  }

  async findUser(appId: number, by: { appUserId?: string; oneupUserId?: string }): Promise<User | undefined> {
    return (await this.listUsers(appId, by, 0, 1))[0];
  }

  async listUsers(appId: number, filter: { appUserId?: string; oneupUserId?: string }, offset: number, limit: number): Promise<User[]> {
    if (filter.oneupUserId !== undefined && !/^\d{1,18}$/.test(filter.oneupUserId)) return [];
    const { rows } = await this.pool.query<UserRow>(
      `SELECT id, app_id, app_user_id, active FROM trb_user WHERE app_id = $1 AND ($2::text IS NULL OR app_user_id = $2) AND ($3::bigint IS NULL OR id = $3)
       ORDER BY id OFFSET $4 LIMIT $5`,
      [appId, filter.appUserId ?? null, filter.oneupUserId ?? null, offset, limit],
    );
    return rows.map(toUser);
  }

  /** Changes a user's app_user_id; 'exists' when another user of the app has the new one. */
  async renameUser(appId: number, userId: string, appUserId: string): Promise<User | 'exists' | undefined> {
    try {
      const { rows } = await this.pool.query<UserRow>('UPDATE trb_user SET app_user_id = $3 WHERE app_id = $1 AND id = $2 RETURNING id, app_id, app_user_id, active', [appId, userId, appUserId]);
      return rows[0] && toUser(rows[0]);
    } catch (err) {
      if ((err as { code?: string }).code === '23505') return 'exists';
      throw err;
    }
  }

  /** Sets the user's sign-in; false when another user of the app has the username. */
  async setPassword(appId: number, userId: string, username: string, password: string): Promise<boolean> {
    try {
      await this.pool.query('UPDATE trb_user SET username = $3, password_hash = $4 WHERE app_id = $1 AND id = $2', [appId, userId, username, await hashPassword(password)]);
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === '23505') return false;
      throw err;
    }
  }

  /**
   * The user whose username and password these are, or undefined. An unknown username, a user
   * without a password and an inactive one verify the password against a dummy hash of the same
   * cost: the time taken never tells whether the username exists.
   * See: https://cheatsheetseries.owasp.org/cheatsheets/Authentication_Cheat_Sheet.html#authentication-responses
   */
  async checkPassword(appId: number, username: string, password: string): Promise<User | undefined> {
    const { rows } = await this.pool.query<UserRow & { password_hash: string | null }>(
      'SELECT id, app_id, app_user_id, active, password_hash FROM trb_user WHERE app_id = $1 AND username = $2',
      [appId, username],
    );
    const r = rows[0];
    const usable = r?.password_hash && r.active ? r.password_hash : undefined;
    const right = await verifyPassword(password, usable ?? (await this.dummyHash()));
    return right && usable ? toUser(r) : undefined;
  }

  /** A scrypt hash of a random password, made once per process, for checkPassword's misses. */
  private dummyHash(): Promise<string> {
    this.dummy ??= hashPassword(newSecret());
    return this.dummy;
  }

  // --- codes and tokens --------------------------------------------------------------------

  /** A single-use authorization code for the user, valid CODE_SECONDS (a SMART one remembers its request). */
  async newCode(appId: number, userId: string, scope = USER_SCOPE, smart?: SmartGrant): Promise<string> {
    const code = newSecret();
    await this.pool.query(
      `INSERT INTO trb_auth_code (code_sha256, app_id, user_id, scope, expires_at, redirect_uri, code_challenge, nonce, patient_id)
       VALUES ($1, $2, $3, $4, now() + interval '${CODE_SECONDS} seconds', $5, $6, $7, $8)`,
      [sha256(code), appId, userId, scope, smart?.redirectUri ?? null, smart?.codeChallenge ?? null, smart?.nonce ?? null, smart?.patientId ?? null],
    );
    return code;
  }

  /**
   * authorization_code: a code works once, for the app it was made for, within CODE_SECONDS. A
   * SMART code also needs its redirect_uri and the PKCE verifier of its challenge; it gives a
   * refresh token only when offline_access was granted, and `idToken` may add an id_token.
   */
  async exchangeCode(
    app: App,
    code: string,
    proof: { redirectUri?: string; codeVerifier?: string } = {},
    idToken?: (g: Granted) => Promise<string | undefined>,
  ): Promise<TokenSet> {
    const tokens = await inTransaction(this.pool, async (c) => {
      const { rows } = await c.query<{ user_id: string; scope: string; live: boolean; used: boolean; active: boolean; redirect_uri: string | null; code_challenge: string | null; nonce: string | null; patient_id: string | null; family: string | null }>(
        `SELECT a.user_id, a.scope, a.expires_at > now() AS live, a.used_at IS NOT NULL AS used, u.active, a.redirect_uri, a.code_challenge, a.nonce, a.patient_id, a.family
         FROM trb_auth_code a JOIN trb_user u ON u.id = a.user_id WHERE a.code_sha256 = $1 AND a.app_id = $2 FOR UPDATE OF a`,
        [sha256(code), app.id],
      );
      const r = rows[0];
      if (r?.used) {
        // A code redeemed twice: one of the two redeemers stole it. What the first redemption
        // issued (and every token refreshed from it) is revoked (RFC 6749 4.1.2, RFC 9700 4.5).
        if (r.family) {
          await c.query('UPDATE trb_token SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL', [r.family]);
          await c.query(NOTIFY_REVOKED);
        }
        return 'replayed' as const;
      }
      if (!r || !r.live) throw new OAuthError('invalid_grant', 'The code is unknown, used or expired; ask for a new one.');
      if (!r.active) throw new OAuthError('invalid_grant', 'The user is not active.');
      if (r.code_challenge !== null) {
        if (proof.redirectUri !== r.redirect_uri) throw new OAuthError('invalid_grant', 'redirect_uri differs from the one the code was asked for.');
        if (!proof.codeVerifier || !/^[A-Za-z0-9._~-]{43,128}$/.test(proof.codeVerifier)) throw new OAuthError('invalid_grant', 'code_verifier (PKCE, 43 to 128 characters) is required.');
        if (!sameHash(Buffer.from(pkceChallenge(proof.codeVerifier)), Buffer.from(r.code_challenge))) throw new OAuthError('invalid_grant', 'code_verifier does not match the code_challenge.');
      } else if (app.public) {
        throw new OAuthError('invalid_grant', 'A public app redeems only codes of /oauth2/authorize (with PKCE).');
      }
      const family = randomUUID();
      await c.query('UPDATE trb_auth_code SET used_at = now(), family = $2 WHERE code_sha256 = $1', [sha256(code), family]);
      // 1upHealth's codes always come with a refresh token; SMART ones when offline_access was granted.
      const withRefresh = r.code_challenge === null || r.scope.split(' ').includes('offline_access');
      const set = await this.issue(c, app, r.user_id, r.scope, family, withRefresh, r.patient_id);
      return { set, granted: { userId: r.user_id, scope: r.scope, nonce: r.nonce, patientId: r.patient_id } };
    });
    if (tokens === 'replayed') {
      this.forget();
      throw new OAuthError('invalid_grant', 'The code was already used; the tokens it gave are now revoked. Ask for a new code.');
    }
    const id = await idToken?.(tokens.granted);
    return id ? { ...tokens.set, id_token: id } : tokens.set;
  }

  /**
   * refresh_token with rotation: the token is spent; a spent one presented again ends its family.
   * An app whose refresh tokens do not rotate (refreshRotates false) gets a new access token and
   * the same refresh token back, good again until it expires.
   */
  async refresh(app: App, refreshToken: string): Promise<TokenSet> {
    const result = await inTransaction(this.pool, async (c) => {
      const { rows } = await c.query<{ family: string; user_id: string | null; scope: string; live: boolean; revoked: boolean; patient_id: string | null }>(
        `SELECT family, user_id, scope, expires_at > now() AS live, revoked_at IS NOT NULL AS revoked, patient_id FROM trb_token
         WHERE token_sha256 = $1 AND kind = 'refresh' AND app_id = $2 FOR UPDATE`,
        [sha256(refreshToken), app.id],
      );
      const r = rows[0];
      if (!r || !r.live) return new OAuthError('invalid_grant', 'The refresh token is unknown or expired; sign in again.');
      if (r.revoked) {
        // Reuse of a spent token: someone else may hold it. Everything of that sign-in stops.
        await c.query('UPDATE trb_token SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL', [r.family]);
        await c.query(NOTIFY_REVOKED);
        return 'reused' as const;
      }
      if (!app.refreshRotates) return { ...(await this.issue(c, app, r.user_id, r.scope, r.family, false, r.patient_id)), refresh_token: refreshToken };
      await c.query('UPDATE trb_token SET revoked_at = now() WHERE token_sha256 = $1', [sha256(refreshToken)]);
      return this.issue(c, app, r.user_id, r.scope, r.family, true, r.patient_id);
    });
    if (result === 'reused') {
      this.forget();
      throw new OAuthError('invalid_grant', 'The refresh token was already used; every token of this sign-in is now revoked. Sign in again.');
    }
    if (result instanceof OAuthError) throw result;
    return result;
  }

  /** client_credentials: an app token, for all of the app's users; no refresh token. */
  async clientToken(app: App): Promise<TokenSet> {
    return this.issue(this.pool, app, null, 'system/*.*', randomUUID(), false, null);
  }

  private async issue(db: pg.Pool | pg.PoolClient, app: App, userId: string | null, scope: string, family: string, withRefresh: boolean, patientId: string | null): Promise<TokenSet> {
    const access = newSecret();
    const refresh = withRefresh ? newSecret() : undefined;
    const seconds = app.accessTokenSeconds ?? ACCESS_TOKEN_SECONDS;
    const rows: [token: string, kind: string, seconds: number][] = [[access, 'access', seconds]];
    if (refresh) rows.push([refresh, 'refresh', REFRESH_TOKEN_SECONDS]);
    await db.query(
      `INSERT INTO trb_token (token_sha256, kind, family, app_id, user_id, scope, expires_at, patient_id)
       SELECT t, k, $3, $4, $5, $6, now() + make_interval(secs => s), $8 FROM unnest($1::bytea[], $2::text[], $7::int[]) AS x(t, k, s)`,
      [rows.map((r) => sha256(r[0])), rows.map((r) => r[1]), family, app.id, userId, scope, rows.map((r) => r[2]), patientId],
    );
    return {
      access_token: access,
      token_type: 'Bearer',
      expires_in: seconds,
      ...(refresh ? { refresh_token: refresh } : {}),
      scope,
      ...(patientId ? { patient: patientId } : {}),
    };
  }

  /** A new authorization request; its id (shown to the browser) is returned once. */
  async newAuthzRequest(r: Omit<AuthzRequest, 'userId'>): Promise<string> {
    const id = newSecret();
    await this.pool.query(
      `INSERT INTO trb_authz_request (id_sha256, app_id, redirect_uri, scope, state, code_challenge, nonce, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now() + interval '${AUTHZ_REQUEST_SECONDS} seconds')`,
      [sha256(id), r.appId, r.redirectUri, r.scope, r.state, r.codeChallenge, r.nonce],
    );
    return id;
  }

  async authzRequest(id: string): Promise<AuthzRequest | undefined> {
    const { rows } = await this.pool.query<{ app_id: number; redirect_uri: string; scope: string; state: string; code_challenge: string; nonce: string | null; user_id: string | null }>(
      'SELECT app_id, redirect_uri, scope, state, code_challenge, nonce, user_id FROM trb_authz_request WHERE id_sha256 = $1 AND expires_at > now()',
      [sha256(id)],
    );
    const r = rows[0];
    return r && { appId: r.app_id, redirectUri: r.redirect_uri, scope: r.scope, state: r.state, codeChallenge: r.code_challenge, nonce: r.nonce, userId: r.user_id };
  }

  /**
   * Counts a wrong password for the request; at AUTHZ_REQUEST_FAILURES the request ends (the
   * person starts again from the app). Answers whether it ended.
   */
  async failedSignIn(id: string): Promise<boolean> {
    const { rows } = await this.pool.query<{ failures: number }>('UPDATE trb_authz_request SET failures = failures + 1 WHERE id_sha256 = $1 RETURNING failures', [sha256(id)]);
    if (!rows[0] || rows[0].failures < AUTHZ_REQUEST_FAILURES) return false;
    await this.endAuthzRequest(id);
    return true;
  }

  async signInRequest(id: string, userId: string): Promise<void> {
    await this.pool.query('UPDATE trb_authz_request SET user_id = $2 WHERE id_sha256 = $1', [sha256(id), userId]);
  }

  /** Ends a request (approved or denied); false when it was already ended. */
  async endAuthzRequest(id: string): Promise<boolean> {
    const { rowCount } = await this.pool.query('DELETE FROM trb_authz_request WHERE id_sha256 = $1', [sha256(id)]);
    return rowCount === 1;
  }

  /** The user's Patient (the first stored), for the SMART patient context; undefined when none. */
  async patientOf(appId: number, userId: string): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ fhir_id: string }>(
      `SELECT fhir_id FROM hfj_resource WHERE partition_id = $1 AND owner_id = $2 AND res_type = 'Patient' AND res_deleted_at IS NULL ORDER BY res_id LIMIT 1`,
      [appId, userId],
    );
    return rows[0]?.fhir_id;
  }

  /**
   * What a bearer access token may do, or undefined when it is unknown, expired or revoked. Checked
   * in the database on every request (a revoked token is refused at once, by every process);
   * lookups arriving together share one statement.
   */
  async accessFor(token: string): Promise<Access | undefined> {
    const hash = sha256(token);
    const key = hash.toString('hex');
    if (this.listening) {
      const hit = this.cache.get(key);
      if (hit && hit.until > Date.now()) return hit.access;
    }
    const generation = this.generation;
    const found = await this.accessLookups.submit(null, hash);
    // Not kept when a revocation was heard meanwhile: the answer may predate it.
    if (found && this.listening && generation === this.generation) {
      if (this.cache.size >= ACCESS_CACHE_MAX) this.cache.clear();
      this.cache.set(key, { access: found.access, until: Math.min(found.expiresAt, Date.now() + ACCESS_CACHE_MS) });
    }
    return found?.access;
  }

  private async accessMany(hashes: Buffer[]): Promise<({ access: Access; expiresAt: number } | undefined)[]> {
    const { rows } = await this.pool.query<AppRow & { user_id: string | null; scope: string; token_sha256: Buffer; expires_at: Date }>({
      name: 'trb_access_many',
      text: `SELECT a.id, a.client_id, a.public, a.name, a.redirect_uris, a.scopes, a.created_at, t.user_id, t.scope, t.token_sha256, t.expires_at
        FROM trb_token t JOIN trb_app a ON a.id = t.app_id LEFT JOIN trb_user u ON u.id = t.user_id
        WHERE t.token_sha256 = ANY($1::bytea[]) AND t.kind = 'access' AND t.revoked_at IS NULL AND t.expires_at > now() AND (t.user_id IS NULL OR u.active)`,
      values: [hashes],
    });
    const byHash = new Map(rows.map((r) => [r.token_sha256.toString('hex'), { access: { app: toApp(r), userId: r.user_id, scope: r.scope }, expiresAt: r.expires_at.getTime() }]));
    return hashes.map((h) => byHash.get(h.toString('hex')));
  }

  /**
   * Keeps valid access tokens in memory (at most ACCESS_CACHE_MS) while this process hears every
   * revocation: a dedicated connection LISTENs to trb_auth, on which each revocation, in any
   * process, NOTIFYs as it commits; each notification empties the memory. Without the
   * connection (lost, or never made) every check reads the database. Answers how to stop.
   */
  async listen(): Promise<() => Promise<void>> {
    const client = await this.pool.connect();
    const lost = () => {
      this.listening = false;
      this.forget();
    };
    client.on('notification', () => this.forget());
    client.on('error', lost);
    client.on('end', lost);
    await client.query('LISTEN trb_auth');
    this.listening = true;
    return async () => {
      lost();
      client.release(true);
    };
  }

  private forget(): void {
    this.generation++;
    this.cache.clear();
  }

  /** RFC 7662: what the app may know of one of its own tokens (inactive for any other). */
  async introspect(app: App, token: string): Promise<Record<string, unknown>> {
    const { rows } = await this.pool.query<{ kind: string; user_id: string | null; scope: string; exp: number; iat: number; app_user_id: string | null }>(
      `SELECT t.kind, t.user_id, t.scope, extract(epoch FROM t.expires_at)::int8 AS exp, extract(epoch FROM t.created_at)::int8 AS iat, u.app_user_id
       FROM trb_token t LEFT JOIN trb_user u ON u.id = t.user_id
       WHERE t.token_sha256 = $1 AND t.app_id = $2 AND t.revoked_at IS NULL AND t.expires_at > now()`,
      [sha256(token), app.id],
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
  async revoke(app: App, token: string): Promise<void> {
    await inTransaction(this.pool, async (c) => {
      await c.query(
        `UPDATE trb_token SET revoked_at = now() WHERE revoked_at IS NULL AND app_id = $2 AND (token_sha256 = $1
           OR family = (SELECT family FROM trb_token WHERE token_sha256 = $1 AND kind = 'refresh' AND app_id = $2))`,
        [sha256(token), app.id],
      );
      await c.query(NOTIFY_REVOKED);
    });
    this.forget();
  }

  /**
   * Ends every live token of one kind that an app issued, at once (a sandbox system's fault
   * switches: "access tokens expire now", "refresh tokens are revoked"); answers how many.
   */
  async endTokens(appId: number, kind: 'access' | 'refresh'): Promise<number> {
    const n = await inTransaction(this.pool, async (c) => {
      const { rowCount } = await c.query('UPDATE trb_token SET revoked_at = now() WHERE app_id = $1 AND kind = $2 AND revoked_at IS NULL AND expires_at > now()', [appId, kind]);
      await c.query(NOTIFY_REVOKED);
      return rowCount ?? 0;
    });
    this.forget();
    return n;
  }

  /**
   * Removes what can no longer be used: expired codes, authorization requests, tokens, client
   * assertions, connect sign-ins and sign-in failures a day old, and the rate counts of past hours (the `expire` job runs this
   * every hour). Answers the rows removed.
   */
  async expire(): Promise<Record<string, number>> {
    const { rows } = await this.pool.query<Record<string, number>>(
      `WITH c AS (DELETE FROM trb_auth_code WHERE expires_at < now() RETURNING 1),
            r AS (DELETE FROM trb_authz_request WHERE expires_at < now() RETURNING 1),
            t AS (DELETE FROM trb_token WHERE expires_at < now() RETURNING 1),
            q AS (DELETE FROM trb_rate WHERE bucket < date_trunc('hour', now()) RETURNING 1),
            a AS (DELETE FROM trb_client_assertion WHERE expires_at < now() RETURNING 1),
            s AS (DELETE FROM trb_connect_state WHERE expires_at < now() RETURNING 1),
            f AS (DELETE FROM trb_signin_failure WHERE updated_at < now() - interval '1 day' AND (locked_until IS NULL OR locked_until < now()) RETURNING 1)
       SELECT (SELECT count(*) FROM c)::int AS codes, (SELECT count(*) FROM r)::int AS requests, (SELECT count(*) FROM t)::int AS tokens,
         (SELECT count(*) FROM q)::int AS rates, (SELECT count(*) FROM a)::int AS assertions, (SELECT count(*) FROM s)::int AS connect_states,
         (SELECT count(*) FROM f)::int AS signin_failures`,
    );
    return rows[0];
  }

  /** Counts one user-management call; false when the app has made `limit` this hour already. */
  async countCall(appId: number, limit: number): Promise<{ ok: boolean; retryAfter: number }> {
    const { rows } = await this.pool.query<{ calls: number; retry: number }>(
      `INSERT INTO trb_rate (app_id, bucket, calls) VALUES ($1, date_trunc('hour', now()), 1)
       ON CONFLICT (app_id, bucket) DO UPDATE SET calls = trb_rate.calls + 1
       RETURNING calls, ceil(extract(epoch FROM date_trunc('hour', now()) + interval '1 hour' - now()))::int AS retry`,
      [appId],
    );
    return { ok: rows[0].calls <= limit, retryAfter: Math.max(1, rows[0].retry) };
  }
}
