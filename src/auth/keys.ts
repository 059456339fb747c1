/**
 * The RS256 key that signs OpenID Connect id_tokens (jose). Made on first use and kept in
 * trb_signing_key, so that every process serving the same database signs with it and the JWKS
 * (`/oauth2/jwks`) lists it.
 */
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { inTransaction } from '../storage/transaction.ts';

const LOCK = 0x7472_6b65_79; // any constant: one process makes the key

export class SigningKeys {
  private readonly pool: pg.Pool;
  private current: Promise<{ kid: string; key: CryptoKey | Uint8Array; publicJwk: JWK }> | undefined;

  constructor(pool: pg.Pool) {
    this.pool = pool;
  }

  private load() {
    this.current ??= inTransaction(this.pool, async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK]);
      const { rows } = await c.query<{ kid: string; private_jwk: JWK; public_jwk: JWK }>('SELECT kid, private_jwk, public_jwk FROM trb_signing_key ORDER BY created_at DESC LIMIT 1');
      if (rows.length) return { kid: rows[0].kid, key: await importJWK(rows[0].private_jwk, 'RS256'), publicJwk: rows[0].public_jwk };
      const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
      const kid = randomUUID();
      const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
      await c.query('INSERT INTO trb_signing_key (kid, private_jwk, public_jwk) VALUES ($1, $2, $3)', [kid, await exportJWK(privateKey), publicJwk]);
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

  /** A signed id_token (RS256) with the given claims, valid for `seconds`. */
  async idToken(claims: Record<string, unknown>, issuer: string, audience: string, subject: string, seconds: number): Promise<string> {
    const { kid, key } = await this.load();
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
      .setIssuer(issuer)
      .setAudience(audience)
      .setSubject(subject)
      .setIssuedAt()
      .setExpirationTime(`${seconds}s`)
      .sign(key);
  }
}
