/**
 * The auth area as one object (the `app.auth` decorator): apps, users, codes, tokens, SMART
 * authorization requests and the user-management rate, each in its own module of src/auth/;
 * this class holds what they share (the pool, the token cache, the access lookups, the dummy
 * password hash) and delegates.
 */
import type pg from 'pg';
import { patientOf } from '../storage/patient-of.ts';
import { AccessLookup } from './access.ts';
import * as apps from './apps.ts';
import type { App, NewApp } from './apps.ts';
import * as authz from './authz-requests.ts';
import type { AuthzRequest } from './authz-requests.ts';
import { authenticateAssertion, type AssertionCheck } from './client-assertion.ts';
import * as codes from './codes.ts';
import type { Granted, SmartGrant } from './codes.ts';
import { expire, type Expired } from './expire.ts';
import { countCall } from './rate.ts';
import { hashPassword, newSecret } from './secrets.ts';
import { TokenCache } from './token-cache.ts';
import * as tokens from './tokens.ts';
import type { Access, TokenSet } from './tokens.ts';
import * as users from './users.ts';
import type { User } from './users.ts';

export { describeApp, redirectUriProblem, type App, type NewApp, type TokenAuthMethod } from './apps.ts';
export { type AuthzRequest } from './authz-requests.ts';
export { USER_SCOPE, type Granted, type SmartGrant } from './codes.ts';
export { ACCESS_TOKEN_SECONDS, AUTHZ_REQUEST_FAILURES, AUTHZ_REQUEST_SECONDS, CODE_SECONDS, REFRESH_TOKEN_SECONDS } from './lifetimes.ts';
export { OAuthError } from './oauth-error.ts';
export { type Access, type TokenSet } from './tokens.ts';
export { type User } from './users.ts';

export class AuthStore {
  private readonly pool: pg.Pool;
  private readonly cache = new TokenCache();
  private readonly lookups: AccessLookup;
  private dummy: Promise<string> | undefined;

  constructor(pool: pg.Pool) {
    this.pool = pool;
    this.lookups = new AccessLookup(pool, this.cache);
  }

  private get deps(): tokens.TokenDeps {
    return { pool: this.pool, cache: this.cache };
  }

  // --- apps --------------------------------------------------------------------------------

  /** See apps.createApp; `db`: a transaction's client, to make the app in it. */
  createApp(input: NewApp, db: pg.Pool | pg.PoolClient = this.pool): Promise<{ app: App; clientSecret: string }> {
    return apps.createApp(db, input);
  }

  /** See client-assertion.ts authenticateAssertion. */
  authenticateAssertion(assertion: string, audiences: string[]): Promise<AssertionCheck> {
    return authenticateAssertion(this.pool, assertion, audiences);
  }

  listApps(): Promise<App[]> {
    return apps.listApps(this.pool);
  }

  appById(id: number): Promise<App | undefined> {
    return apps.appById(this.pool, id);
  }

  appByClientId(clientId: string): Promise<App | undefined> {
    return apps.appByClientId(this.pool, clientId);
  }

  authenticateApp(clientId: string, clientSecret: string): Promise<App | undefined> {
    return apps.authenticateApp(this.pool, clientId, clientSecret);
  }

  rotateSecret(clientId: string): Promise<string | undefined> {
    return apps.rotateSecret(this.pool, clientId);
  }

  /** Deletes the app, its users, tokens and every resource of its partition. */
  async deleteApp(clientId: string): Promise<boolean> {
    const deleted = await apps.deleteApp(this.pool, clientId);
    if (deleted) this.cache.forget();
    return deleted;
  }

  // --- users -------------------------------------------------------------------------------

  createUser(appId: number, appUserId: string): Promise<User | undefined> {
    return users.createUser(this.pool, appId, appUserId);
  }

  findUser(appId: number, by: { appUserId?: string; oneupUserId?: string }): Promise<User | undefined> {
    return users.findUser(this.pool, appId, by);
  }

  listUsers(appId: number, filter: { appUserId?: string; oneupUserId?: string }, offset: number, limit: number): Promise<User[]> {
    return users.listUsers(this.pool, appId, filter, offset, limit);
  }

  renameUser(appId: number, userId: string, appUserId: string): Promise<User | 'exists' | undefined> {
    return users.renameUser(this.pool, appId, userId, appUserId);
  }

  setPassword(appId: number, userId: string, username: string, password: string): Promise<boolean> {
    return users.setPassword(this.pool, appId, userId, username, password);
  }

  checkPassword(appId: number, username: string, password: string): Promise<User | undefined> {
    return users.checkPassword(this.pool, () => this.dummyHash(), appId, username, password);
  }

  /** A scrypt hash of a random password, made once per process, for checkPassword's misses. */
  private dummyHash(): Promise<string> {
    this.dummy ??= hashPassword(newSecret());
    return this.dummy;
  }

  // --- codes and tokens --------------------------------------------------------------------

  newCode(appId: number, userId: string, scope?: string, smart?: SmartGrant): Promise<string> {
    return codes.newCode(this.pool, appId, userId, scope, smart);
  }

  exchangeCode(
    app: App,
    code: string,
    proof?: { redirectUri?: string; codeVerifier?: string },
    idToken?: (g: Granted) => Promise<string | undefined>,
  ): Promise<TokenSet> {
    return codes.exchangeCode(this.deps, app, code, proof, idToken);
  }

  refresh(app: App, refreshToken: string): Promise<TokenSet> {
    return tokens.refresh(this.deps, app, refreshToken);
  }

  /** `scope`: the system scopes granted (src/auth/token-grant.ts clientCredentialsScope). */
  clientToken(app: App, scope: string): Promise<TokenSet> {
    return tokens.clientToken(this.pool, app, scope);
  }

  accessFor(token: string): Promise<Access | undefined> {
    return this.lookups.accessFor(token);
  }

  /** See TokenCache.listen. */
  listen(): Promise<() => Promise<void>> {
    return this.cache.listen(this.pool);
  }

  introspect(app: App, token: string): Promise<Record<string, unknown>> {
    return tokens.introspect(this.pool, app, token);
  }

  revoke(app: App, token: string): Promise<void> {
    return tokens.revoke(this.deps, app, token);
  }

  endTokens(appId: number, kind: 'access' | 'refresh'): Promise<number> {
    return tokens.endTokens(this.deps, appId, kind);
  }

  // --- SMART authorization requests --------------------------------------------------------

  newAuthzRequest(r: Omit<AuthzRequest, 'userId'>): Promise<string> {
    return authz.newAuthzRequest(this.pool, r);
  }

  authzRequest(id: string): Promise<AuthzRequest | undefined> {
    return authz.authzRequest(this.pool, id);
  }

  failedSignIn(id: string): Promise<boolean> {
    return authz.failedSignIn(this.pool, id);
  }

  signInRequest(id: string, userId: string): Promise<void> {
    return authz.signInRequest(this.pool, id, userId);
  }

  endAuthzRequest(id: string): Promise<boolean> {
    return authz.endAuthzRequest(this.pool, id);
  }

  /** The user's Patient (src/storage/patient-of.ts). */
  patientOf(appId: number, userId: string): Promise<string | undefined> {
    return patientOf(this.pool, appId, userId);
  }

  // --- upkeep ------------------------------------------------------------------------------

  /** The hourly sweep (src/auth/expire.ts), run now. */
  expire(): Promise<Expired> {
    return expire(undefined, { pool: this.pool });
  }

  countCall(appId: number, limit: number): Promise<{ ok: boolean; retryAfter: number }> {
    return countCall(this.pool, appId, limit);
  }
}
