/**
 * private_key_jwt: a client that authenticates at the token endpoint with an assertion signed by
 * one of the keys it registered, as SMART Backend Services has it ("asymmetric" client
 * authentication): iss and sub the client_id, aud the token endpoint, exp at most five minutes
 * ahead, a jti never used before, signed (RS384 or ES384, or their 256-bit kin) by the key of the
 * app's registered JWK Set its `kid` names.
 * See: https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html,
 * https://www.rfc-editor.org/rfc/rfc7523#section-3
 */
import type pg from 'pg';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import { appByClientId, type App } from './apps.ts';
import { sha256 } from './secrets.ts';
import { rememberAssertion } from './sql/apps.ts';

/** The signing algorithms an assertion may use: SMART's RS384 and ES384 first, then RS256 and ES256. */
export const ASSERTION_ALGORITHMS = ['RS384', 'ES384', 'RS256', 'ES256'];

/** How far ahead an assertion's exp may be (SMART: "no more than five minutes in the future"). */
export const MAX_ASSERTION_SECONDS = 300;

/** How far the client's clock may be off ours, for exp (both ways) and nbf. */
const CLOCK_SKEW_SECONDS = 30;

/** The app an assertion proves, or why it proves none (a sentence for error_description). */
export type AssertionCheck = { client: App } | { problem: string };

/**
 * The app a private_key_jwt client assertion (RFC 7523) proves, or the problem: signed by the key
 * of the app's JWK Set that its `kid` names (no `jku`: the app registered its keys, not a URL),
 * iss and sub its client_id, aud one of `audiences` (the token endpoint, first), unexpired, its
 * exp at most MAX_ASSERTION_SECONDS ahead, its jti never seen before (remembered until exp).
 * A problem is for the client to fix; a database failure is not one, and throws.
 * See: https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html#signature-verification
 */
export async function authenticateAssertion(pool: pg.Pool, assertion: string, audiences: string[]): Promise<AssertionCheck> {
  const problem = (p: string): AssertionCheck => ({ problem: p });
  let claims: JWTPayload;
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    claims = decodeJwt(assertion);
    header = decodeProtectedHeader(assertion);
  } catch {
    return problem('client_assertion is not a signed JWT (a JWS in compact form, RFC 7519); sign one with the private key of a key you registered.');
  }
  const clientId = claims.iss;
  if (typeof clientId !== 'string' || !clientId || clientId.length > 200)
    return problem('The client assertion needs iss, and sub, set to your client_id.');
  const client = await appByClientId(pool, clientId);
  if (!client) return problem('No app has the client_id the client assertion names as iss; set iss and sub to your client_id.');
  if (client.tokenAuthMethod !== 'private_key_jwt' || !client.jwks)
    return problem('This app has no registered JWK Set, so it authenticates with its client_secret, not a client assertion.');
  if (header.jku !== undefined)
    return problem(
      'The client assertion names a jku, but this app registered its JWK Set itself, not a URL: sign without jku, with the kid of a registered key.',
    );
  if (typeof header.kid !== 'string' || !header.kid)
    return problem("The client assertion's header needs kid, the key of your registered JWK Set that signed it.");
  if (typeof header.alg !== 'string' || !ASSERTION_ALGORITHMS.includes(header.alg))
    return problem(
      `The client assertion is signed with ${String(header.alg).slice(0, 20)}; sign it with ${ASSERTION_ALGORITHMS.slice(0, -1).join(', ')} or ${ASSERTION_ALGORITHMS.at(-1)}.`,
    );
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(assertion, createLocalJWKSet(client.jwks as JSONWebKeySet), {
      issuer: client.clientId,
      subject: client.clientId,
      audience: audiences,
      algorithms: ASSERTION_ALGORITHMS,
      requiredClaims: ['jti', 'exp'],
      clockTolerance: CLOCK_SKEW_SECONDS,
    }));
  } catch (err) {
    return problem(verifyProblem(err, audiences[0]));
  }
  const now = Math.floor(Date.now() / 1000);
  if (payload.exp! > now + MAX_ASSERTION_SECONDS + CLOCK_SKEW_SECONDS)
    return problem(
      `The client assertion's exp is more than ${MAX_ASSERTION_SECONDS / 60} minutes ahead; set it at most ${MAX_ASSERTION_SECONDS} seconds from now.`,
    );
  const jti = payload.jti;
  if (typeof jti !== 'string' || !jti || jti.length > 1000)
    return problem('The client assertion needs a jti: a string of up to 1,000 characters, new for each assertion.');
  const { rowCount } = await pool.query(rememberAssertion(sha256(jti), client.id, payload.exp));
  if (rowCount !== 1) return problem('This client assertion (its jti) was used before; sign a new one, with a new jti, for each request.');
  return { client };
}

/** What jose's refusal of a signed assertion means for the client, in a sentence. */
function verifyProblem(err: unknown, audience: string): string {
  if (err instanceof errors.JWTExpired) return 'The client assertion has expired (its exp is past); sign a new one.';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'iss' || err.claim === 'sub') return 'The client assertion needs iss and sub both set to your client_id.';
    if (err.claim === 'aud') return `The client assertion's aud must be this server's token endpoint, ${audience}.`;
    if (err.claim === 'nbf') return "The client assertion's nbf is in the future; check your clock.";
    if (err.claim === 'jti') return 'The client assertion needs a jti, new for each assertion.';
    if (err.claim === 'exp') return 'The client assertion needs exp, a number of seconds since 1970, at most five minutes ahead.';
    return `The client assertion's ${err.claim.slice(0, 20)} claim is not valid.`;
  }
  if (err instanceof errors.JWKSNoMatchingKey)
    return 'No key of your registered JWK Set has the kid of the client assertion and a key type for its alg; sign with a registered key and name it by its kid.';
  if (err instanceof errors.JWKSMultipleMatchingKeys)
    return 'More than one key of your registered JWK Set has the kid of the client assertion; give each key its own kid.';
  if (err instanceof errors.JWSSignatureVerificationFailed)
    return 'The signature of the client assertion does not verify with the registered key its kid names; sign with the private key of that key pair.';
  if (err instanceof errors.JWKSInvalid)
    return 'The JWK Set registered for this app is not usable (malformed, or not public keys); register it again.';
  return 'client_assertion is not a valid signed JWT (RFC 7519); sign one with the private key of a key you registered.';
}
