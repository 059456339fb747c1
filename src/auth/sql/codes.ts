/** Fixed SQL statements of authorization codes (trb_auth_code). */
import type { Sql } from '../../storage/sql.ts';
import { CODE_SECONDS } from '../lifetimes.ts';

export interface CodeValues {
  codeSha256: Buffer;
  appId: number;
  userId: string;
  scope: string;
  redirectUri: string | null;
  codeChallenge: string | null;
  nonce: string | null;
  patientId: string | null;
}

export function insertCode(c: CodeValues): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_auth_code (code_sha256, app_id, user_id, scope, expires_at, redirect_uri, code_challenge, nonce, patient_id)
       VALUES ($1, $2, $3, $4, now() + interval '${CODE_SECONDS} seconds', $5, $6, $7, $8)`,
    values: [c.codeSha256, c.appId, c.userId, c.scope, c.redirectUri, c.codeChallenge, c.nonce, c.patientId],
  };
}

/** The code of the app, with its user's state, locked until the transaction ends. */
export function codeForUpdate(codeSha256: Buffer, appId: number): Sql {
  return {
    text: /* SQL */ `SELECT a.user_id, a.scope, a.expires_at > now() AS live, a.used_at IS NOT NULL AS used, u.active, a.redirect_uri, a.code_challenge, a.nonce, a.patient_id, a.family
         FROM trb_auth_code a JOIN trb_user u ON u.id = a.user_id WHERE a.code_sha256 = $1 AND a.app_id = $2 FOR UPDATE OF a`,
    values: [codeSha256, appId],
  };
}

/** The code spent; `family`: the tokens it gave. */
export const spendCode = (codeSha256: Buffer, family: string): Sql => ({
  text: 'UPDATE trb_auth_code SET used_at = now(), family = $2 WHERE code_sha256 = $1',
  values: [codeSha256, family],
});
