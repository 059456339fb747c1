/**
 * private_key_jwt: a client that authenticates at the token endpoint with an assertion signed by
 * one of the keys it registered.
 * See: https://www.rfc-editor.org/rfc/rfc7523#section-2.2
 */
import type pg from 'pg';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import { appByClientId, type App } from './apps.ts';
import { sha256 } from './secrets.ts';
import { rememberAssertion } from './sql/apps.ts';

/**
 * The app a private_key_jwt client assertion (RFC 7523) proves, or undefined: signed by a key
 * of the app's JWK Set, iss and sub its client_id, aud one of `audiences` (the token endpoint),
 * unexpired, at most 5 minutes old, and its jti never seen before.
 */
export async function authenticateAssertion(pool: pg.Pool, assertion: string, audiences: string[]): Promise<App | undefined> {
  let clientId: string | undefined;
  try {
    clientId = decodeJwt(assertion).iss;
  } catch {
    return undefined;
  }
  const client = clientId && clientId.length <= 200 ? await appByClientId(pool, clientId) : undefined;
  if (!client || client.tokenAuthMethod !== 'private_key_jwt' || !client.jwks) return undefined;
  try {
    const { payload } = await jwtVerify(assertion, createLocalJWKSet(client.jwks as JSONWebKeySet), {
      issuer: client.clientId,
      subject: client.clientId,
      audience: audiences,
      algorithms: ['RS384', 'ES384', 'RS256', 'ES256'],
      maxTokenAge: '5m',
      requiredClaims: ['jti', 'exp'],
    });
    const { rowCount } = await pool.query(rememberAssertion(sha256(String(payload.jti)), client.id, payload.exp));
    return rowCount === 1 ? client : undefined;
  } catch {
    return undefined;
  }
}
