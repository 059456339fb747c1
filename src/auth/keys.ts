/**
 * A signing key of one purpose (jose): the RS256 key that signs OpenID Connect id_tokens (its JWKS
 * at `/oauth2/jwks`), or the RS384 key Tributary signs client assertions with at health systems
 * (private_key_jwt; its JWKS at `/connect/jwks`). Made on first use and kept in trb_signing_key,
 * so that every process serving the same database signs with it; the private JWK sealed by the
 * vault (purpose private-key, bound to the kid), like every other secret at rest.
 * Without an encryption key (DATABASE_URL and no ENCRYPTION_KEY) no private key is made or read:
 * no id_token is issued and private_key_jwt sign-ins at health systems cannot work.
 * See: https://www.rfc-editor.org/rfc/rfc7517#section-6.3
 */
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { inTransaction } from '../storage/transaction.ts';
import * as sql from './sql/signing-keys.ts';
import { VaultError, type Vault } from './vault.ts';

const LOCK = 0x7472_6b65_79; // any constant: one process makes the key

export type KeyPurpose = 'id_token' | 'client_assertion';
const ALG: Record<KeyPurpose, string> = { id_token: 'RS256', client_assertion: 'RS384' };

/** What cannot work without a key, said where it fails and at start. */
export const NO_KEY_FOR_SIGNING =
  'No encryption key (ENCRYPTION_KEY; required with DATABASE_URL): the private signing keys cannot be kept sealed, so no id_token is issued (scope openid) and private_key_jwt sign-ins at health systems cannot work.';

/**
 * Seals the private JWKs stored in the clear (rows from before they were sealed), in `c`'s
 * transaction under the keys' lock; answers how many. Run at start, and by each load.
 */
async function sealPlaintext(c: pg.PoolClient, vault: Vault): Promise<number> {
  const { rows } = await c.query<{ kid: string; private_jwk: JWK }>(sql.plaintextKeys());
  for (const r of rows) {
    await c.query(sql.sealKey(r.kid, vault.encrypt(JSON.stringify(r.private_jwk), r.kid, 'private-key')));
  }
  return rows.length;
}

/** Seals every private key still stored in the clear, once (processes starting together take turns). */
export async function sealStoredKeys(pool: pg.Pool, vault: Vault): Promise<number> {
  return inTransaction(pool, async (c) => {
    await c.query(sql.lockKeys(LOCK));
    return sealPlaintext(c, vault);
  });
}

export class SigningKeys {
  private readonly pool: pg.Pool;
  private readonly vault: Vault;
  private readonly purpose: KeyPurpose;
  readonly alg: string;
  private current: Promise<{ kid: string; key: CryptoKey; publicJwk: JWK }> | undefined;

  constructor(pool: pg.Pool, vault: Vault, purpose: KeyPurpose = 'id_token') {
    this.pool = pool;
    this.vault = vault;
    this.purpose = purpose;
    this.alg = ALG[purpose];
  }

  /** The private key and its kid (made on first use); a VaultError without an encryption key. */
  load() {
    if (!this.vault.ready) return Promise.reject(new VaultError(NO_KEY_FOR_SIGNING, 'no_key'));
    this.current ??= inTransaction(this.pool, async (c) => {
      await c.query(sql.lockKeys(LOCK));
      // A process of an older version may have written one in the clear since this one started.
      await sealPlaintext(c, this.vault);
      const { rows } = await c.query<{ kid: string; private_jwk_sealed: Buffer; public_jwk: JWK }>(sql.currentKey(this.purpose));
      if (rows.length) {
        const jwk = JSON.parse(this.vault.decrypt(rows[0].private_jwk_sealed, rows[0].kid, 'private-key')) as JWK;
        return { kid: rows[0].kid, key: (await importJWK(jwk, this.alg)) as CryptoKey, publicJwk: rows[0].public_jwk };
      }
      const { privateKey, publicKey } = await generateKeyPair(this.alg, { extractable: true });
      const kid = randomUUID();
      const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: this.alg, use: 'sig' };
      const sealed = this.vault.encrypt(JSON.stringify(await exportJWK(privateKey)), kid, 'private-key');
      await c.query(sql.insertKey(kid, sealed, publicJwk, this.purpose));
      return { kid, key: privateKey, publicJwk };
    }).catch((err) => {
      this.current = undefined;
      throw err;
    });
    return this.current;
  }

  /** The public keys (none without an encryption key: nothing is signed). */
  async jwks(): Promise<{ keys: JWK[] }> {
    if (!this.vault.ready) return { keys: [] };
    return { keys: [(await this.load()).publicJwk] };
  }

  /** A signed id_token with the given claims, valid for `seconds`. */
  async idToken(claims: Record<string, unknown>, issuer: string, audience: string, subject: string, seconds: number): Promise<string> {
    const { kid, key } = await this.load();
    return new SignJWT(claims)
      .setProtectedHeader({ alg: this.alg, kid, typ: 'JWT' })
      .setIssuer(issuer)
      .setAudience(audience)
      .setSubject(subject)
      .setIssuedAt()
      .setExpirationTime(`${seconds}s`)
      .sign(key);
  }
}
