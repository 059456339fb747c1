/** Fixed SQL statements of SMART authorization requests being signed in to (trb_authz_request). */
import type { Sql } from '../../storage/sql.ts';
import { AUTHZ_REQUEST_SECONDS } from '../lifetimes.ts';
import type { AuthzRequest } from '../authz-requests.ts';

/** A request as stored: its fields before sign-in, under the hash of its id. */
export type AuthzRequestValues = Omit<AuthzRequest, 'userId'> & { idSha256: Buffer };

export function insertAuthzRequest(r: AuthzRequestValues): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_authz_request (id_sha256, app_id, redirect_uri, scope, state, code_challenge, nonce, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now() + interval '${AUTHZ_REQUEST_SECONDS} seconds')`,
    values: [r.idSha256, r.appId, r.redirectUri, r.scope, r.state, r.codeChallenge, r.nonce],
  };
}

export const authzRequest = (idSha256: Buffer): Sql => ({
  text: 'SELECT app_id, redirect_uri, scope, state, code_challenge, nonce, user_id FROM trb_authz_request WHERE id_sha256 = $1 AND expires_at > now()',
  values: [idSha256],
});

export const countFailure = (idSha256: Buffer): Sql => ({
  text: 'UPDATE trb_authz_request SET failures = failures + 1 WHERE id_sha256 = $1 RETURNING failures',
  values: [idSha256],
});

export const setRequestUser = (idSha256: Buffer, userId: string): Sql => ({
  text: 'UPDATE trb_authz_request SET user_id = $2 WHERE id_sha256 = $1',
  values: [idSha256, userId],
});

export const deleteAuthzRequest = (idSha256: Buffer): Sql => ({ text: 'DELETE FROM trb_authz_request WHERE id_sha256 = $1', values: [idSha256] });
