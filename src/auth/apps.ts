/**
 * Apps (tenants) and their client credentials, in PostgreSQL (migration 0003). Only hashes of
 * secrets are stored; a secret is returned once, when made.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { inTransaction } from '../storage/transaction.ts';
import type { Jwks } from './jwks.ts';
import { newSecret, sameHash, sha256 } from './secrets.ts';
import * as sql from './sql/apps.ts';
import { notifyRevoked } from './sql/tokens.ts';

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

/** A SHA-256 no secret hashes to (in practice): what an unknown client_id's secret is compared with. */
const NO_SECRET = Buffer.alloc(32);

/**
 * An app as the CLI and the admin API show it (never its secret): `token_endpoint_auth_method`
 * is `none` for a public app and null for one that sends its secret either way; `jwks`, its
 * public keys, is there when it has some.
 */
export function describeApp(a: App) {
  return {
    client_id: a.clientId,
    public: a.public,
    name: a.name,
    redirect_uris: a.redirectUris,
    scopes: a.scopes,
    token_endpoint_auth_method: a.public ? 'none' : a.tokenAuthMethod,
    ...(a.jwks ? { jwks: a.jwks } : {}),
    created_at: a.createdAt.toISOString(),
  };
}

/** What is wrong with a list of redirect URIs (each must be an http(s) URL), or undefined. */
export function redirectUriProblem(uris: readonly string[]): string | undefined {
  const bad = uris.find((u) => u.length > 2000 || !URL.canParse(u) || !/^https?:$/.test(new URL(u).protocol));
  return bad === undefined ? undefined : `redirect URI ${bad.slice(0, 100)} is not an http(s) URL.`;
}

export type AppRow = {
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
export const toApp = (r: AppRow): App => ({
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

/**
 * A new app and its secret (none for a public app: it has nothing to keep secret). `clientId`
 * and `clientSecret` are chosen by the server unless given (the sandbox systems fix theirs);
 * `db`: a transaction's client, to make the app in it.
 */
export async function createApp(db: pg.Pool | pg.PoolClient, input: NewApp): Promise<{ app: App; clientSecret: string }> {
  const clientSecret = input.clientSecret ?? newSecret();
  const { rows } = await db.query<AppRow>(
    sql.insertApp({
      clientId: input.clientId ?? randomBytes(16).toString('hex'),
      secretSha256: sha256(clientSecret),
      name: input.name,
      redirectUris: input.redirectUris ?? [],
      scopes: input.scopes ?? [],
      public: input.public ?? false,
      tokenAuthMethod: input.tokenAuthMethod ?? null,
      jwks: input.jwks ?? null,
      accessTokenSeconds: input.accessTokenSeconds ?? null,
      refreshRotates: input.refreshRotates ?? true,
    }),
  );
  return { app: toApp(rows[0]), clientSecret: input.public || input.tokenAuthMethod === 'private_key_jwt' ? '' : clientSecret };
}

export async function listApps(pool: pg.Pool): Promise<App[]> {
  const { rows } = await pool.query<AppRow>(sql.listApps());
  return rows.map(toApp);
}

export async function appById(pool: pg.Pool, id: number): Promise<App | undefined> {
  const { rows } = await pool.query<AppRow>(sql.appById(id));
  return rows[0] && toApp(rows[0]);
}

export async function appByClientId(pool: pg.Pool, clientId: string): Promise<App | undefined> {
  const { rows } = await pool.query<AppRow>(sql.appByClientId(clientId));
  return rows[0] && toApp(rows[0]);
}

/** The app whose credentials these are, or undefined (same time whether the id or the secret is wrong). */
export async function authenticateApp(pool: pg.Pool, clientId: string, clientSecret: string): Promise<App | undefined> {
  const { rows } = await pool.query<AppRow & { secret_sha256: Buffer }>(sql.appWithSecret(clientId));
  const given = sha256(clientSecret);
  // An unknown client_id is compared too (with a hash no secret has), so both cost the same.
  const same = sameHash(rows[0]?.secret_sha256 ?? NO_SECRET, given);
  return same && rows.length > 0 && !rows[0].public ? toApp(rows[0]) : undefined;
}

/** A new secret for the app; the old one stops working at once. Undefined: no such app, or a public one. */
export async function rotateSecret(pool: pg.Pool, clientId: string): Promise<string | undefined> {
  const secret = newSecret();
  const { rowCount } = await pool.query(sql.setSecret(clientId, sha256(secret)));
  return rowCount ? secret : undefined;
}

/**
 * Replaces the app's JWK Set (checked: src/auth/jwks.ts) at once: an assertion signed by a key
 * not in `jwks` is refused from the next request. The app authenticates with private_key_jwt
 * from then on (a secret it had stops working). Undefined: no such app, or a public one.
 */
export async function setJwks(pool: pg.Pool, clientId: string, jwks: Jwks): Promise<App | undefined> {
  const { rows } = await pool.query<AppRow>(sql.setJwks(clientId, jwks));
  return rows[0] && toApp(rows[0]);
}

/**
 * Deletes the app, its users, tokens and every resource of its partition; true when there was
 * one (its tokens are then revoked: the caller forgets what it remembers of them).
 */
export async function deleteApp(pool: pg.Pool, clientId: string): Promise<boolean> {
  return inTransaction(pool, async (c) => {
    const { rows } = await c.query<{ id: number }>(sql.deleteApp(clientId));
    if (!rows.length) return false;
    await c.query(notifyRevoked());
    const tables = await c.query<{ table_name: string }>(sql.partitionedTables());
    for (const { table_name } of tables.rows) await c.query(sql.deletePartitionRows(table_name, rows[0].id));
    return true;
  });
}
