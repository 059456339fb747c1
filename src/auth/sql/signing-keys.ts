/** Fixed SQL statements of the signing keys (trb_signing_key). */
import type { Sql } from '../../storage/sql.ts';

/** The transaction's lock on the keys (`key`: the constant naming it): one process makes or seals them. */
export const lockKeys = (key: number): Sql => ({ text: 'SELECT pg_advisory_xact_lock($1)', values: [key] });

/** Private JWKs stored in the clear (from before they were sealed), locked. */
export const plaintextKeys = (): Sql => ({
  text: 'SELECT kid, private_jwk FROM trb_signing_key WHERE private_jwk IS NOT NULL FOR UPDATE',
  values: [],
});

export const sealKey = (kid: string, sealed: Buffer): Sql => ({
  text: 'UPDATE trb_signing_key SET private_jwk_sealed = $2, private_jwk = NULL WHERE kid = $1',
  values: [kid, sealed],
});

/** The newest key of a purpose. */
export const currentKey = (purpose: string): Sql => ({
  text: 'SELECT kid, private_jwk_sealed, public_jwk FROM trb_signing_key WHERE purpose = $1 ORDER BY created_at DESC LIMIT 1',
  values: [purpose],
});

export const insertKey = (kid: string, sealed: Buffer, publicJwk: object, purpose: string): Sql => ({
  text: 'INSERT INTO trb_signing_key (kid, private_jwk_sealed, public_jwk, purpose) VALUES ($1, $2, $3, $4)',
  values: [kid, sealed, publicJwk, purpose],
});
