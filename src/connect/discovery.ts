/**
 * SMART discovery of a health system's authorization server: `{base}/.well-known/smart-configuration`,
 * else the CapabilityStatement's oauth-uris, kept a while per FHIR base in a DiscoveryCache that
 * whoever builds the service makes (one per app) and passes in.
 * See: https://hl7.org/fhir/smart-app-launch/STU2/conformance.html
 */
import type * as oauth from 'oauth4webapi';
import { fetchJson, oauthUris, type JsonRetry } from '../fhir-http-client.ts';
import { OutboundError, type OutboundFetch } from '../net/outbound.ts';
import { ConnectError } from './connect-error.ts';

/** How long one request to a health system may take (discovery here; token requests in client.ts). */
export const TIMEOUT_MS = 15_000;

/** Discovery reads a few times before it gives up, heeding a Retry-After up to 10 s. */
const DISCOVERY: JsonRetry = { attempts: 3, backoffMs: 300, timeoutMs: TIMEOUT_MS, maxRetryAfterS: 10 };
const getJson = (fetch: OutboundFetch, url: string) => fetchJson(fetch, url, DISCOVERY);

/** What discovery found, per FHIR base, kept a while: a connect reads it twice, every sync once. */
const DISCOVERED_MS = 10 * 60_000;

/** What discovery found, per FHIR base (without its trailing slashes), for 10 minutes. */
export class DiscoveryCache {
  readonly #found = new Map<string, { at: number; as: oauth.AuthorizationServer }>();

  /** The server metadata found for `base` within the last 10 minutes, else undefined. */
  get(base: string): oauth.AuthorizationServer | undefined {
    const known = this.#found.get(base);
    return known && Date.now() - known.at < DISCOVERED_MS ? known.as : undefined;
  }

  set(base: string, as: oauth.AuthorizationServer): void {
    this.#found.set(base, { at: Date.now(), as });
  }
}

/** The system's authorization server, from its SMART configuration or its CapabilityStatement (kept 10 minutes). */
export async function discover(fhirBase: string, fetch: OutboundFetch, cache: DiscoveryCache): Promise<oauth.AuthorizationServer> {
  const base = fhirBase.replace(/\/+$/, '');
  const known = cache.get(base);
  if (known) return known;
  const as = await discoverNow(base, fetch);
  cache.set(base, as);
  return as;
}

async function discoverNow(base: string, fetch: OutboundFetch): Promise<oauth.AuthorizationServer> {
  let smart: Record<string, unknown> | undefined;
  try {
    smart = (await getJson(fetch, `${base}/.well-known/smart-configuration`)) as Record<string, unknown>;
  } catch {
    // Older servers state it in the CapabilityStatement only.
  }
  if (typeof smart?.authorization_endpoint === 'string' && typeof smart.token_endpoint === 'string') {
    return { ...(smart as object), issuer: typeof smart.issuer === 'string' ? smart.issuer : base } as oauth.AuthorizationServer;
  }
  let cs: unknown;
  try {
    cs = await getJson(fetch, `${base}/metadata`);
  } catch (err) {
    if (err instanceof OutboundError && err.code === 'blocked_address')
      throw new ConnectError(
        'server_error',
        `The health system at ${base} is on a private or local network address, which Tributary does not connect to.`,
      );
    throw new ConnectError('temporarily_unavailable', `The health system did not answer (${(err as Error).message}) at ${base}; try again later.`);
  }
  const uris = oauthUris(cs);
  const authorize = uris?.get('authorize');
  const token = uris?.get('token');
  if (!authorize || !token)
    throw new ConnectError(
      'server_error',
      `The health system at ${base} does not say where to sign in (no SMART configuration): it cannot be connected to.`,
    );
  const revoke = uris!.get('revoke');
  return { issuer: base, authorization_endpoint: authorize, token_endpoint: token, ...(revoke ? { revocation_endpoint: revoke } : {}) };
}
