/**
 * A signing key of one purpose (jose): the RS256 key that signs OpenID Connect id_tokens (its JWKS
 * at `/oauth2/jwks`), or the RS384 key Tributary signs client assertions with at health systems
 * (private_key_jwt; its JWKS at `/connect/jwks`). Made on first use and kept in trb_signing_key,
 * so that every process serving the same database signs with it.
 */
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { inTransaction } from '../storage/transaction.ts';

const LOCK = 0x7472_6b65_79; // any constant: one process makes the key

export type KeyPurpose = 'id_token' | 'client_assertion';
const ALG: Record<KeyPurpose, string> = { id_token: 'RS256', client_assertion: 'RS384' };

export class SigningKeys {
  private readonly pool: pg.Pool;
  private readonly purpose: KeyPurpose;
  readonly alg: string;
  private current: Promise<{ kid: string; key: CryptoKey; publicJwk: JWK }> | undefined;

  constructor(pool: pg.Pool, purpose: KeyPurpose = 'id_token') {
    this.pool = pool;
    this.purpose = purpose;
    this.alg = ALG[purpose];
  }

  /** The private key and its kid (made on first use). */
  load() {
    this.current ??= inTransaction(this.pool, async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK]);
      const { rows } = await c.query<{ kid: string; private_jwk: JWK; public_jwk: JWK }>(
        'SELECT kid, private_jwk, public_jwk FROM trb_signing_key WHERE purpose = $1 ORDER BY created_at DESC LIMIT 1',
        [this.purpose],
      );
      if (rows.length) return { kid: rows[0].kid, key: (await importJWK(rows[0].private_jwk, this.alg)) as CryptoKey, publicJwk: rows[0].public_jwk };
      const { privateKey, publicKey } = await generateKeyPair(this.alg, { extractable: true });
      const kid = randomUUID();
      const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: this.alg, use: 'sig' };
      await c.query('INSERT INTO trb_signing_key (kid, private_jwk, public_jwk, purpose) VALUES ($1, $2, $3, $4)', [kid, await exportJWK(privateKey), publicJwk, this.purpose]);
      return { kid, key: privateKey, publicJwk };
    }).catch((err) => {
      this.current = undefined;
      throw err;
    });
    return this.current;
  }

  async jwks(): Promise<{ keys: JWK[] }> {
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
