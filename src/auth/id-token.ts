/**
 * The OpenID Connect id_token of a grant, when `openid` was granted and a signing key can be
 * kept sealed; its fhirUser is the person's own Patient (SMART's patient context), when they have one.
 * See: https://build.fhir.org/ig/HL7/smart-app-launch/scopes-and-launch-context.html#scopes-for-requesting-identity-data
 */
import type { App } from './apps.ts';
import type { Granted } from './codes.ts';
import type { SigningKeys } from './keys.ts';
import { ACCESS_TOKEN_SECONDS } from './lifetimes.ts';
import type { Vault } from './vault.ts';

export interface IdTokenDeps {
  keys: SigningKeys;
  vault: Vault;
  /** This server's base URL: the issuer. */
  issuer: string;
  /** The absolute FHIR base the client's tokens are for. */
  fhirBase: string;
}

export async function idTokenFor(deps: IdTokenDeps, client: App, g: Granted): Promise<string | undefined> {
  if (!g.scope.split(' ').includes('openid') || !deps.vault.ready) return undefined;
  const fhirUser = g.patientId ? `${deps.fhirBase}/Patient/${g.patientId}` : undefined;
  const claims = { ...(fhirUser ? { fhirUser } : {}), ...(g.nonce ? { nonce: g.nonce } : {}) };
  return deps.keys.idToken(claims, deps.issuer, client.clientId, g.userId, ACCESS_TOKEN_SECONDS);
}
