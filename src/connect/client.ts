/**
 * Tributary as a SMART App Launch client of a health system (standalone launch), on panva's
 * oauth4webapi: discovery (`{base}/.well-known/smart-configuration`, else the CapabilityStatement's
 * oauth-uris: discovery.ts), the authorize URL (PKCE S256, state, `aud` = the FHIR base), the code exchange,
 * refresh and revocation, each authenticating as the system's client registration says (a public
 * client, client_secret_basic, client_secret_post, or private_key_jwt with Tributary's own key).
 * Plain http is allowed only to this server's own origin and loopback hosts (the sandboxes and
 * local test servers); every real health system is https.
 */
import * as oauth from 'oauth4webapi';
import type pg from 'pg';
import { VaultError, type Vault } from '../auth/vault.ts';
import { scrubAddresses, type OutboundFetch } from '../net/outbound.ts';
import { ConnectError } from './connect-error.ts';
import { discover, DiscoveryCache, TIMEOUT_MS } from './discovery.ts';
import { hostAllowed } from './registrations.ts';
import * as statements from './sql.ts';

export { ConnectError } from './connect-error.ts';
export { DiscoveryCache } from './discovery.ts';

export const DEFAULT_SCOPE = 'launch/patient openid fhirUser offline_access patient/*.read';

export interface Registration {
  clientId: string;
  authMethod: 'none' | 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';
  secret?: string;
  scope: string;
  /** The hosts its credentials may be sent to (registrations.ts hostAllowed); required when vendor-wide. */
  hosts?: string[];
  /** The vendor, when it is a vendor-wide registration. */
  vendor?: string;
}

/** What talking to one system needs: its server metadata, the client, and how it authenticates. */
export interface SystemClient {
  fhirBase: string;
  as: oauth.AuthorizationServer;
  client: oauth.Client;
  auth: oauth.ClientAuth;
  scope: string;
  options: { [oauth.allowInsecureRequests]?: boolean; [oauth.customFetch]: OutboundFetch; signal?: () => AbortSignal };
}

export interface Tokens {
  accessToken: string;
  refreshToken?: string;
  expiresAt: Date | null;
  scope: string;
  patient?: string;
}

/** The registration for a system: its own, else its vendor's; undefined when there is none. */
export async function registrationFor(db: pg.Pool, vault: Vault, system: { id: string; vendor: string | null }): Promise<Registration | undefined> {
  const { rows } = await db.query<{
    client_id: string;
    auth_method: Registration['authMethod'];
    client_secret_sealed: Buffer | null;
    scope: string | null;
    hosts: string[] | null;
    vendor: string | null;
  }>(statements.registrationFor(system.id, system.vendor));
  const r = rows[0];
  if (!r) return undefined;
  let secret: string | undefined;
  try {
    secret = r.client_secret_sealed ? vault.decrypt(r.client_secret_sealed, r.client_id, 'registration-secret') : undefined;
  } catch (err) {
    if (!(err instanceof VaultError)) throw err;
    throw new ConnectError(
      'server_error',
      `Tributary's client secret for this system cannot be opened with this server's key (was ENCRYPTION_KEY changed?): the operator registers it again.`,
    );
  }
  return {
    clientId: r.client_id,
    authMethod: r.auth_method,
    secret,
    scope: r.scope ?? DEFAULT_SCOPE,
    ...(r.hosts ? { hosts: r.hosts } : {}),
    ...(r.vendor ? { vendor: r.vendor } : {}),
  };
}

function insecureAllowed(url: string, ownOrigin: string): boolean {
  const u = new URL(url);
  return u.protocol === 'http:' && (u.origin === ownOrigin || ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname));
}

/** Tributary's own signing key for client assertions (private_key_jwt). */
export interface ClientKey {
  kid: string;
  key: CryptoKey;
}

/**
 * Refuses (before anything is sent with the credentials) a registration used at a host it does
 * not name: its client authentication goes to the token and revocation endpoints, so both must be
 * among its hosts. A vendor-wide one must name hosts: any directory entry of the vendor, wherever
 * it points, would receive its secret or a client assertion.
 */
function checkHosts(reg: Registration, as: oauth.AuthorizationServer): void {
  if (!reg.hosts) {
    if (!reg.vendor) return;
    throw new ConnectError(
      'unauthorized_client',
      `Tributary's registration for ${reg.vendor} names no hosts it may be used at, so it is not used: the operator registers it again with them (npx tributary connect register --vendor .. --hosts ..).`,
    );
  }
  const endpoints = [as.token_endpoint!, ...(as.revocation_endpoint ? [as.revocation_endpoint] : [])];
  if (!endpoints.every((u) => URL.canParse(u) && hostAllowed(new URL(u).hostname, reg.hosts!))) {
    throw new ConnectError(
      'unauthorized_client',
      `This health system's token endpoint is not at a host that Tributary's registration${reg.vendor ? ` for ${reg.vendor}` : ''} may be used at, so nothing was sent to it: the operator registers this system on its own, or adds the host to the registration's hosts.`,
    );
  }
}

/**
 * `fetch`: the app's outbound fetch (src/net/outbound.ts), for discovery and every token request;
 * `discovery`: the app's DiscoveryCache (`app.discovery`).
 */
export async function systemClient(
  fhirBase: string,
  reg: Registration,
  ownOrigin: string,
  clientKey: () => Promise<ClientKey>,
  fetch: OutboundFetch,
  discovery: DiscoveryCache,
): Promise<SystemClient> {
  const as = await discover(fhirBase, fetch, discovery);
  checkHosts(reg, as);
  let auth: oauth.ClientAuth;
  if (reg.authMethod === 'client_secret_basic') auth = oauth.ClientSecretBasic(reg.secret!);
  else if (reg.authMethod === 'client_secret_post') auth = oauth.ClientSecretPost(reg.secret!);
  else if (reg.authMethod === 'private_key_jwt') auth = oauth.PrivateKeyJwt(await clientKey());
  else auth = oauth.None();
  const transportOk = [fhirBase, as.authorization_endpoint!, as.token_endpoint!].every(
    (u) => !u.startsWith('http:') || insecureAllowed(u, ownOrigin),
  );
  if (!transportOk) throw new ConnectError('server_error', `The health system at ${fhirBase} is not served over https.`);
  return {
    fhirBase: fhirBase.replace(/\/+$/, ''),
    as,
    client: { client_id: reg.clientId },
    auth,
    scope: reg.scope,
    options: { [oauth.allowInsecureRequests]: true, [oauth.customFetch]: fetch, signal: () => AbortSignal.timeout(TIMEOUT_MS) },
  };
}

/** The AES-GCM associated data that binds a connection's sealed tokens to its (user, system) pair. */
export const connectionSealKey = (userId: string, systemId: string): string => `${userId}:${systemId}`;

/**
 * The client for a directory system: its registration (ConnectError `unauthorized_client` when
 * there is none) and its discovered server metadata.
 */
export async function clientForSystem(
  db: pg.Pool,
  vault: Vault,
  system: { id: string; name: string; resource_url: string; vendor: string | null },
  ownOrigin: string,
  clientKey: () => Promise<ClientKey>,
  fetch: OutboundFetch,
  discovery: DiscoveryCache,
): Promise<SystemClient> {
  const reg = await registrationFor(db, vault, system);
  if (!reg)
    throw new ConnectError(
      'unauthorized_client',
      `${system.name} has no client registration here yet: the operator registers Tributary with it first (npx tributary connect register, or CLIENT_REGISTRATIONS_FILE).`,
    );
  return systemClient(system.resource_url, reg, ownOrigin, clientKey, fetch, discovery);
}

/** What building the client for a directory system needs, from the app's parts. */
export interface ClientDeps {
  pool: pg.Pool;
  vault: Vault;
  /** This server's origin: plain http is allowed to it (and loopback hosts). */
  ownOrigin: string;
  clientKey: () => Promise<ClientKey>;
  fetch: OutboundFetch;
  /** The app's discovery cache (`app.discovery`), shared by its connects and syncs. */
  discovery: DiscoveryCache;
}

/** The client for a directory system, from the app's parts (clientForSystem). */
export const clientFor = (deps: ClientDeps, system: Parameters<typeof clientForSystem>[2]): Promise<SystemClient> =>
  clientForSystem(deps.pool, deps.vault, system, deps.ownOrigin, deps.clientKey, deps.fetch, deps.discovery);

/** Where to send the person: the system's authorize endpoint with PKCE S256, the state and `aud`. */
export async function authorizeUrl(sc: SystemClient, redirectUri: string, state: string, codeVerifier: string): Promise<string> {
  const url = new URL(sc.as.authorization_endpoint!);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', sc.client.client_id);
  url.searchParams.set('redirect_uri', redirectUri);
  url.searchParams.set('scope', sc.scope);
  url.searchParams.set('state', state);
  url.searchParams.set('aud', sc.fhirBase);
  url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(codeVerifier));
  url.searchParams.set('code_challenge_method', 'S256');
  return url.toString();
}

function tokensOf(r: oauth.TokenEndpointResponse, asked: string): Tokens {
  return {
    accessToken: r.access_token,
    refreshToken: r.refresh_token,
    expiresAt: typeof r.expires_in === 'number' ? new Date(Date.now() + r.expires_in * 1000) : null,
    scope: typeof r.scope === 'string' ? r.scope : asked,
    patient: typeof r.patient === 'string' ? r.patient : undefined,
  };
}

/** The code of the callback, exchanged for tokens; a refusal is a ConnectError. */
export async function exchangeCode(sc: SystemClient, callback: URL, state: string, redirectUri: string, codeVerifier: string): Promise<Tokens> {
  try {
    const params = oauth.validateAuthResponse(sc.as, sc.client, callback, state);
    const res = await oauth.authorizationCodeGrantRequest(sc.as, sc.client, sc.auth, params, redirectUri, codeVerifier, sc.options);
    return tokensOf(await oauth.processAuthorizationCodeResponse(sc.as, sc.client, res, { requireIdToken: false }), sc.scope);
  } catch (err) {
    throw await refusal(err, 'The health system refused the sign-in');
  }
}

/** New tokens for a refresh token (rotated when the system rotates them). */
export async function refresh(sc: SystemClient, refreshToken: string): Promise<Tokens> {
  try {
    const res = await oauth.refreshTokenGrantRequest(sc.as, sc.client, sc.auth, refreshToken, sc.options);
    const t = tokensOf(await oauth.processRefreshTokenResponse(sc.as, sc.client, res), sc.scope);
    return { ...t, refreshToken: t.refreshToken ?? refreshToken };
  } catch (err) {
    throw await refusal(err, 'The health system refused the refresh token');
  }
}

/** Revokes a token at the system when it offers revocation; false when it does not. */
export async function revoke(sc: SystemClient, token: string): Promise<boolean> {
  if (!sc.as.revocation_endpoint) return false;
  const res = await oauth.revocationRequest(sc.as, sc.client, sc.auth, token, sc.options);
  await oauth.processRevocationResponse(res);
  return true;
}

/** A ConnectError carrying the system's own error code (RFC 6749 5.2) when it gave one. */
async function refusal(err: unknown, what: string): Promise<ConnectError> {
  const said = (error: string, description?: string) => new ConnectError(error, `${what}: ${error}${description ? ` (${description})` : ''}.`);
  if (err instanceof oauth.ResponseBodyError || err instanceof oauth.AuthorizationResponseError) return said(err.error, err.error_description);
  if (err instanceof oauth.WWWAuthenticateChallengeError) {
    // A 401 with a challenge (a client authentication refused): the body may say more.
    const body = (await err.response.json().catch(() => undefined)) as { error?: unknown; error_description?: unknown } | undefined;
    const error = typeof body?.error === 'string' ? body.error : (err.cause[0]?.parameters.error ?? 'invalid_client');
    return said(error, typeof body?.error_description === 'string' ? body.error_description : undefined);
  }
  return new ConnectError('server_error', `${what}: ${scrubAddresses((err as Error).message)}.`);
}
