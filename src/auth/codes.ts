/**
 * Single-use authorization codes (migration 0003; SMART's in 0004) and their exchange for tokens.
 * A code redeemed twice revokes what its first redemption issued.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { inTransaction } from '../storage/transaction.ts';
import type { App } from './apps.ts';
import { OAuthError } from './oauth-error.ts';
import { newSecret, pkceChallenge, sameHash, sha256 } from './secrets.ts';
import * as sql from './sql/codes.ts';
import { notifyRevoked, revokeFamily } from './sql/tokens.ts';
import { issue, type TokenDeps, type TokenSet } from './tokens.ts';

/** The scope of tokens made by the user-management flow: the user's own data, all of it. */
export const USER_SCOPE = 'user/*.*';

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

/** A single-use authorization code for the user, valid CODE_SECONDS (a SMART one remembers its request). */
export async function newCode(pool: pg.Pool, appId: number, userId: string, scope = USER_SCOPE, smart?: SmartGrant): Promise<string> {
  const code = newSecret();
  await pool.query(
    sql.insertCode({
      codeSha256: sha256(code),
      appId,
      userId,
      scope,
      redirectUri: smart?.redirectUri ?? null,
      codeChallenge: smart?.codeChallenge ?? null,
      nonce: smart?.nonce ?? null,
      patientId: smart?.patientId ?? null,
    }),
  );
  return code;
}

type CodeRow = {
  user_id: string;
  scope: string;
  live: boolean;
  used: boolean;
  active: boolean;
  redirect_uri: string | null;
  code_challenge: string | null;
  nonce: string | null;
  patient_id: string | null;
  family: string | null;
};

/**
 * authorization_code: a code works once, for the app it was made for, within CODE_SECONDS. A
 * SMART code also needs its redirect_uri and the PKCE verifier of its challenge; it gives a
 * refresh token only when offline_access was granted, and `idToken` may add an id_token.
 */
export async function exchangeCode(
  deps: TokenDeps,
  app: App,
  code: string,
  proof: { redirectUri?: string; codeVerifier?: string } = {},
  idToken?: (g: Granted) => Promise<string | undefined>,
): Promise<TokenSet> {
  const tokens = await inTransaction(deps.pool, async (c) => {
    const { rows } = await c.query<CodeRow>(sql.codeForUpdate(sha256(code), app.id));
    const r = rows[0];
    if (r?.used) {
      // A code redeemed twice: one of the two redeemers stole it. What the first redemption
      // issued (and every token refreshed from it) is revoked (RFC 6749 4.1.2, RFC 9700 4.5).
      if (r.family) {
        await c.query(revokeFamily(r.family));
        await c.query(notifyRevoked());
      }
      return 'replayed' as const;
    }
    if (!r || !r.live) throw new OAuthError('invalid_grant', 'The code is unknown, used or expired; ask for a new one.');
    if (!r.active) throw new OAuthError('invalid_grant', 'The user is not active.');
    if (r.code_challenge !== null) {
      if (proof.redirectUri !== r.redirect_uri) throw new OAuthError('invalid_grant', 'redirect_uri differs from the one the code was asked for.');
      if (!proof.codeVerifier || !/^[A-Za-z0-9._~-]{43,128}$/.test(proof.codeVerifier)) {
        throw new OAuthError('invalid_grant', 'code_verifier (PKCE, 43 to 128 characters) is required.');
      }
      if (!sameHash(Buffer.from(pkceChallenge(proof.codeVerifier)), Buffer.from(r.code_challenge))) {
        throw new OAuthError('invalid_grant', 'code_verifier does not match the code_challenge.');
      }
    } else if (app.public) {
      throw new OAuthError('invalid_grant', 'A public app redeems only codes of /oauth2/authorize (with PKCE).');
    }
    const family = randomUUID();
    await c.query(sql.spendCode(sha256(code), family));
    // 1upHealth's codes always come with a refresh token; SMART ones when offline_access was granted.
    const withRefresh = r.code_challenge === null || r.scope.split(' ').includes('offline_access');
    const set = await issue(c, app, r.user_id, r.scope, family, withRefresh, r.patient_id);
    return { set, granted: { userId: r.user_id, scope: r.scope, nonce: r.nonce, patientId: r.patient_id } };
  });
  if (tokens === 'replayed') {
    deps.cache.forget();
    throw new OAuthError('invalid_grant', 'The code was already used; the tokens it gave are now revoked. Ask for a new code.');
  }
  const id = await idToken?.(tokens.granted);
  return id ? { ...tokens.set, id_token: id } : tokens.set;
}
