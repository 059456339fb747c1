/** Fixed SQL statements of apps (trb_app) and the client assertions they sign (trb_client_assertion). */
import type { Sql } from '../../storage/sql.ts';

export const APP_COLUMNS =
  'id, client_id, public, name, redirect_uris, scopes, created_at, token_auth_method, jwks, access_token_seconds, refresh_rotates';

export interface AppValues {
  clientId: string;
  secretSha256: Buffer;
  name: string;
  redirectUris: string[];
  scopes: string[];
  public: boolean;
  tokenAuthMethod: string | null;
  jwks: { keys: object[] } | null;
  accessTokenSeconds: number | null;
  refreshRotates: boolean;
}

export function insertApp(a: AppValues): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_app (client_id, secret_sha256, name, redirect_uris, scopes, public, token_auth_method, jwks, access_token_seconds, refresh_rotates)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ${APP_COLUMNS}`,
    values: [
      a.clientId,
      a.secretSha256,
      a.name,
      a.redirectUris,
      a.scopes,
      a.public,
      a.tokenAuthMethod,
      a.jwks,
      a.accessTokenSeconds,
      a.refreshRotates,
    ],
  };
}

export const listApps = (): Sql => ({ text: `SELECT ${APP_COLUMNS} FROM trb_app ORDER BY id`, values: [] });

export const appById = (id: number): Sql => ({ text: `SELECT ${APP_COLUMNS} FROM trb_app WHERE id = $1`, values: [id] });

export const appByClientId = (clientId: string): Sql => ({
  name: 'trb_app_by_client',
  text: `SELECT ${APP_COLUMNS} FROM trb_app WHERE client_id = $1`,
  values: [clientId],
});

/** The app and its secret's hash, to check a secret against. */
export const appWithSecret = (clientId: string): Sql => ({
  name: 'trb_app_auth',
  text: `SELECT ${APP_COLUMNS}, secret_sha256 FROM trb_app WHERE client_id = $1`,
  values: [clientId],
});

export const setSecret = (clientId: string, secretSha256: Buffer): Sql => ({
  text: 'UPDATE trb_app SET secret_sha256 = $2 WHERE client_id = $1 AND NOT public',
  values: [clientId, secretSha256],
});

/** A new JWK Set, and private_key_jwt with it (a secret-based app stops taking its secret). */
export const setJwks = (clientId: string, jwks: { keys: object[] }): Sql => ({
  text: /* SQL */ `UPDATE trb_app SET jwks = $2, token_auth_method = 'private_key_jwt' WHERE client_id = $1 AND NOT public RETURNING ${APP_COLUMNS}`,
  values: [clientId, jwks],
});

export const deleteApp = (clientId: string): Sql => ({ text: 'DELETE FROM trb_app WHERE client_id = $1 RETURNING id', values: [clientId] });

/** The tables that hold rows of a partition (an app's): FHIR storage's and Tributary's own. */
export const partitionedTables = (): Sql => ({
  text: /* SQL */ `SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() AND column_name = 'partition_id' AND (table_name LIKE 'hfj\\_%' OR table_name LIKE 'trb\\_%')`,
  values: [],
});

/** `table`: a name partitionedTables answered (checked all the same: it is written into the text). */
export function deletePartitionRows(table: string, partitionId: number): Sql {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(table)) throw new Error(`${table} is not a table name partitionedTables answers`);
  return { text: `DELETE FROM ${table} WHERE partition_id = $1`, values: [partitionId] };
}

/** A client assertion's jti, remembered until it expires: none is accepted twice. */
export const rememberAssertion = (jtiSha256: Buffer, appId: number, exp: unknown): Sql => ({
  text: 'INSERT INTO trb_client_assertion (jti_sha256, app_id, expires_at) VALUES ($1, $2, to_timestamp($3)) ON CONFLICT DO NOTHING',
  values: [jtiSha256, appId, exp],
});

/** Redirect URIs that start with `prefix` (lower case), at most 1,000: the candidates of an origin. */
export function redirectUrisStartingWith(prefix: string): Sql {
  return {
    text: /* SQL */ `SELECT DISTINCT u AS uri FROM trb_app, unnest(redirect_uris) u WHERE starts_with(lower(u), $1) LIMIT 1000`,
    values: [prefix],
  };
}
