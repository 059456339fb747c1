/**
 * The JWK Set an app registers for private_key_jwt (SMART Backend Services, and confidential
 * asymmetric SMART apps), checked before it is stored: public RSA (2048 bits or more) or EC
 * (P-256, P-384) signing keys, each with a kid of its own, and no private member. And how a new
 * app authenticates at the token endpoint, from what the operator gave (the admin API's fields,
 * or the CLI's options).
 * See: https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html#registering-a-client-communicating-public-keys,
 * https://www.rfc-editor.org/rfc/rfc7517#section-5, https://www.rfc-editor.org/rfc/rfc7591#section-2
 */
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { ASSERTION_ALGORITHMS } from './client-assertion.ts';
import type { TokenAuthMethod } from './apps.ts';

export type Jwks = { keys: object[] };

export const TOKEN_AUTH_METHODS: readonly TokenAuthMethod[] = ['client_secret_basic', 'client_secret_post', 'private_key_jwt'];

/** More keys than rotation needs (old, new, and a spare or two per algorithm). */
export const MAX_KEYS = 20;
const MAX_JSON_CHARACTERS = 64 * 1024;

/** Members of a private (or symmetric) JWK; none may be registered (RFC 7518 sections 6.2.2, 6.3.2, 6.4). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const MIN_RSA_BITS = 2048;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** The curves of the EC algorithms an assertion may use (ES384, ES256). */
const CURVES: Record<string, string> = { 'P-384': 'ES384', 'P-256': 'ES256' };
const ALGORITHMS: Record<string, string[]> = {
  RSA: ASSERTION_ALGORITHMS.filter((a) => a.startsWith('RS')),
  EC: ASSERTION_ALGORITHMS.filter((a) => a.startsWith('ES')),
};

/**
 * The JWK Set `value` is, or what is wrong with it (a sentence saying what to do). Keys are kept
 * as given (they are public, and the client may expect to read them back).
 */
export function checkJwks(value: unknown): { jwks: Jwks } | { problem: string } {
  const problem = (p: string) => ({ problem: p });
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    return problem('The JWK Set must be a JSON object {"keys": [...]} holding the public keys of the app.');
  const set = value as Record<string, unknown>;
  if (!('keys' in set) && 'kty' in set) return problem('This is a single JWK, not a JWK Set: wrap it as {"keys": [ ...the key... ]}.');
  if (!Array.isArray(set.keys)) return problem('The JWK Set needs "keys", a list of the public keys of the app (RFC 7517 section 5).');
  if (!set.keys.length) return problem('The JWK Set holds no key; put at least one public key in "keys".');
  if (set.keys.length > MAX_KEYS) return problem(`The JWK Set holds ${set.keys.length} keys; register at most ${MAX_KEYS}.`);
  if (JSON.stringify(set).length > MAX_JSON_CHARACTERS)
    return problem(`The JWK Set is larger than ${MAX_JSON_CHARACTERS / 1024} KB; register the public keys only, without certificate chains.`);
  const kids = new Set<string>();
  for (const [i, key] of set.keys.entries()) {
    const found = keyProblem(key, i);
    if (found) return problem(found);
    const kid = (key as { kid: string }).kid;
    if (kids.has(kid)) return problem(`Two keys have the kid ${kid.slice(0, 100)}; give each key a kid of its own.`);
    kids.add(kid);
  }
  return { jwks: set as Jwks };
}

/** What is wrong with the `i`th key of a JWK Set, or undefined. */
function keyProblem(key: unknown, i: number): string | undefined {
  if (key === null || typeof key !== 'object' || Array.isArray(key)) return `Key ${i + 1} of the JWK Set is not a JSON object; each key is a JWK.`;
  const k = key as Record<string, unknown>;
  const kidOk = typeof k.kid === 'string' && k.kid.length > 0 && k.kid.length <= 200;
  const name = kidOk ? `Key ${(k.kid as string).slice(0, 100)}` : `Key ${i + 1}`;
  const secret = PRIVATE_MEMBERS.filter((m) => m in k);
  if (secret.length)
    return `${name} holds private key members (${secret.join(', ')}): register the public key only, and keep the private key with the client.`;
  if (k.kty !== 'RSA' && k.kty !== 'EC')
    return `${name} has kty ${String(k.kty).slice(0, 20)}; register RSA or EC keys (signing RS384 or ES384 client assertions).`;
  if (!kidOk) return `${name} has no kid; give each key a kid (1 to 200 characters), which the client assertion names in its header.`;
  if (k.use !== undefined && k.use !== 'sig') return `${name} has use ${String(k.use).slice(0, 20)}; a client assertion key has use sig, or none.`;
  if (k.key_ops !== undefined && !(Array.isArray(k.key_ops) && k.key_ops.includes('verify')))
    return `${name} has key_ops without verify; leave key_ops out, or make it ["verify"].`;
  if (k.alg !== undefined && !ALGORITHMS[k.kty].includes(k.alg as string))
    return `${name} has alg ${String(k.alg).slice(0, 20)}; an ${k.kty} key here signs with ${ALGORITHMS[k.kty].join(' or ')} (or leave alg out).`;
  if (k.kty === 'EC' && !(typeof k.crv === 'string' && k.crv in CURVES))
    return `${name} is on curve ${String(k.crv).slice(0, 20)}; register a P-384 (ES384) or P-256 (ES256) key.`;
  if (k.kty === 'EC' && k.alg !== undefined && CURVES[k.crv as string] !== k.alg)
    return `${name} is a ${k.crv as string} key with alg ${k.alg as string}; a ${k.crv as string} key signs with ${CURVES[k.crv as string]}.`;
  const members = k.kty === 'RSA' ? ['n', 'e'] : ['x', 'y'];
  const notValid = `${name} is not a valid ${k.kty} public key (${k.kty === 'RSA' ? 'n, e' : 'crv, x, y'} in base64url); export it again from its key pair.`;
  if (!members.every((m) => typeof k[m] === 'string' && BASE64URL.test(k[m] as string))) return notValid;
  let bits: number | undefined;
  try {
    bits = createPublicKey({ key: k as JsonWebKey, format: 'jwk' }).asymmetricKeyDetails?.modulusLength;
  } catch {
    return notValid;
  }
  if (k.kty === 'RSA' && (bits ?? 0) < MIN_RSA_BITS) return `${name} is a ${bits}-bit RSA key; register an RSA key of ${MIN_RSA_BITS} bits or more.`;
  return undefined;
}

/** How a new app authenticates at the token endpoint: the method (null: its secret either way) and its keys. */
export type ClientAuthentication = { method: TokenAuthMethod | null; jwks: Jwks | null };

/**
 * How a new app authenticates, from the method and JWK Set given (either may be absent), or the
 * problem: a JWK Set alone means private_key_jwt; private_key_jwt needs one; a public app has
 * neither. `names`: what the caller calls the two (fields of the admin API, options of the CLI).
 */
export function clientAuthentication(
  given: { public?: boolean; method?: unknown; jwks?: unknown },
  names: { method: string; jwks: string },
): ClientAuthentication | { problem: string } {
  const { method, jwks } = given;
  if (method !== undefined && !TOKEN_AUTH_METHODS.includes(method as TokenAuthMethod))
    return { problem: `${names.method} must be ${TOKEN_AUTH_METHODS.slice(0, -1).join(', ')} or ${TOKEN_AUTH_METHODS.at(-1)}.` };
  if (given.public && (method !== undefined || jwks !== undefined))
    return { problem: `A public app has no client authentication: leave out ${names.method} and ${names.jwks}, or make a confidential app.` };
  if (jwks === undefined) {
    if (method === 'private_key_jwt') return { problem: `private_key_jwt needs the public keys of the app: give ${names.jwks} (a JWK Set).` };
    return { method: (method as TokenAuthMethod | undefined) ?? null, jwks: null };
  }
  if (method !== undefined && method !== 'private_key_jwt')
    return { problem: `A JWK Set is for private_key_jwt: set ${names.method} to private_key_jwt, or leave out ${names.jwks}.` };
  const checked = checkJwks(jwks);
  return 'problem' in checked ? checked : { method: 'private_key_jwt', jwks: checked.jwks };
}

/** The kids of a JWK Set, for messages (kids are public). */
export const kidsOf = (jwks: Jwks | null): string[] => (jwks?.keys ?? []).map((k) => String((k as { kid?: unknown }).kid));
