/**
 * SMART authorization requests being signed in to and approved (see /oauth2/authorize), in
 * PostgreSQL (migration 0004). Only the hash of a request's id is stored; the id goes to the
 * browser once. A request lives AUTHZ_REQUEST_SECONDS and ends after AUTHZ_REQUEST_FAILURES
 * wrong passwords.
 */
import type pg from 'pg';
import { AUTHZ_REQUEST_FAILURES } from './lifetimes.ts';
import { newSecret, sha256 } from './secrets.ts';
import * as sql from './sql/authz-requests.ts';

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

/** A new authorization request; its id (shown to the browser) is returned once. */
export async function newAuthzRequest(pool: pg.Pool, r: Omit<AuthzRequest, 'userId'>): Promise<string> {
  const id = newSecret();
  await pool.query(
    sql.insertAuthzRequest({
      idSha256: sha256(id),
      appId: r.appId,
      redirectUri: r.redirectUri,
      scope: r.scope,
      state: r.state,
      codeChallenge: r.codeChallenge,
      nonce: r.nonce,
    }),
  );
  return id;
}

export async function authzRequest(pool: pg.Pool, id: string): Promise<AuthzRequest | undefined> {
  type Row = {
    app_id: number;
    redirect_uri: string;
    scope: string;
    state: string;
    code_challenge: string;
    nonce: string | null;
    user_id: string | null;
  };
  const { rows } = await pool.query<Row>(sql.authzRequest(sha256(id)));
  const r = rows[0];
  return (
    r && {
      appId: r.app_id,
      redirectUri: r.redirect_uri,
      scope: r.scope,
      state: r.state,
      codeChallenge: r.code_challenge,
      nonce: r.nonce,
      userId: r.user_id,
    }
  );
}

/**
 * Counts a wrong password for the request; at AUTHZ_REQUEST_FAILURES the request ends (the
 * person starts again from the app). Answers whether it ended.
 */
export async function failedSignIn(pool: pg.Pool, id: string): Promise<boolean> {
  const { rows } = await pool.query<{ failures: number }>(sql.countFailure(sha256(id)));
  if (!rows[0] || rows[0].failures < AUTHZ_REQUEST_FAILURES) return false;
  await endAuthzRequest(pool, id);
  return true;
}

/** The request's person, signed in (consent comes next). */
export async function signInRequest(pool: pg.Pool, id: string, userId: string): Promise<void> {
  await pool.query(sql.setRequestUser(sha256(id), userId));
}

/** Ends a request (approved or denied); false when it was already ended. */
export async function endAuthzRequest(pool: pg.Pool, id: string): Promise<boolean> {
  const { rowCount } = await pool.query(sql.deleteAuthzRequest(sha256(id)));
  return rowCount === 1;
}
