/** Fixed SQL statements of access and refresh tokens (trb_token). */
import type { Sql } from '../../storage/sql.ts';

/** Sent in the transaction of every revocation; see TokenCache.listen. */
export const notifyRevoked = (): Sql => ({ text: "SELECT pg_notify('trb_auth', 'revoked')", values: [] });

export const listenRevoked = (): Sql => ({ text: 'LISTEN trb_auth', values: [] });

/** Every live token of a sign-in (the tokens one code gave, and those refreshed from them) revoked. */
export const revokeFamily = (family: string): Sql => ({
  text: 'UPDATE trb_token SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL',
  values: [family],
});

export function refreshForUpdate(tokenSha256: Buffer, appId: number): Sql {
  return {
    text: /* SQL */ `SELECT family, user_id, scope, expires_at > now() AS live, revoked_at IS NOT NULL AS revoked, patient_id FROM trb_token
         WHERE token_sha256 = $1 AND kind = 'refresh' AND app_id = $2 FOR UPDATE`,
    values: [tokenSha256, appId],
  };
}

export const revokeToken = (tokenSha256: Buffer): Sql => ({
  text: 'UPDATE trb_token SET revoked_at = now() WHERE token_sha256 = $1',
  values: [tokenSha256],
});

export interface TokenValues {
  hashes: Buffer[];
  kinds: string[];
  seconds: number[];
  family: string;
  appId: number;
  userId: string | null;
  scope: string;
  patientId: string | null;
}

/** Tokens of one sign-in, one per item of the arrays (hash, kind, lifetime). */
export function insertTokens(t: TokenValues): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_token (token_sha256, kind, family, app_id, user_id, scope, expires_at, patient_id)
       SELECT t, k, $3, $4, $5, $6, now() + make_interval(secs => s), $8 FROM unnest($1::bytea[], $2::text[], $7::int[]) AS x(t, k, s)`,
    values: [t.hashes, t.kinds, t.family, t.appId, t.userId, t.scope, t.seconds, t.patientId],
  };
}

/** The live access tokens of these hashes, with their apps (an inactive user's tokens are not). */
export function accessMany(hashes: Buffer[]): Sql {
  return {
    name: 'trb_access_many',
    text: /* SQL */ `SELECT a.id, a.client_id, a.public, a.name, a.redirect_uris, a.scopes, a.created_at, t.user_id, t.scope, t.token_sha256, t.expires_at
        FROM trb_token t JOIN trb_app a ON a.id = t.app_id LEFT JOIN trb_user u ON u.id = t.user_id
        WHERE t.token_sha256 = ANY($1::bytea[]) AND t.kind = 'access' AND t.revoked_at IS NULL AND t.expires_at > now() AND (t.user_id IS NULL OR u.active)`,
    values: [hashes],
  };
}

export function introspect(tokenSha256: Buffer, appId: number): Sql {
  return {
    text: /* SQL */ `SELECT t.kind, t.user_id, t.scope, extract(epoch FROM t.expires_at)::int8 AS exp, extract(epoch FROM t.created_at)::int8 AS iat, u.app_user_id
       FROM trb_token t LEFT JOIN trb_user u ON u.id = t.user_id
       WHERE t.token_sha256 = $1 AND t.app_id = $2 AND t.revoked_at IS NULL AND t.expires_at > now()`,
    values: [tokenSha256, appId],
  };
}

/** One of the app's tokens revoked; a refresh token with its family. */
export function revokeOfApp(tokenSha256: Buffer, appId: number): Sql {
  return {
    text: /* SQL */ `UPDATE trb_token SET revoked_at = now() WHERE revoked_at IS NULL AND app_id = $2 AND (token_sha256 = $1
           OR family = (SELECT family FROM trb_token WHERE token_sha256 = $1 AND kind = 'refresh' AND app_id = $2))`,
    values: [tokenSha256, appId],
  };
}

export const endTokens = (appId: number, kind: 'access' | 'refresh'): Sql => ({
  text: 'UPDATE trb_token SET revoked_at = now() WHERE app_id = $1 AND kind = $2 AND revoked_at IS NULL AND expires_at > now()',
  values: [appId, kind],
});
