/**
 * What this authorization server says of itself: the SMART configuration of a FHIR base
 * (`.well-known/smart-configuration`) and the OpenID Connect discovery document.
 * See: https://build.fhir.org/ig/HL7/smart-app-launch/conformance.html
 */
import { ASSERTION_ALGORITHMS } from './client-assertion.ts';

const CAPABILITIES = [
  'launch-standalone',
  'client-public',
  'client-confidential-symmetric',
  'client-confidential-asymmetric',
  'context-standalone-patient',
  'permission-patient',
  'permission-user',
  'permission-offline',
  'permission-v1',
  'permission-v2',
  'sso-openid-connect',
  'authorize-post',
];
const SCOPES_SUPPORTED = [
  'openid',
  'fhirUser',
  'launch/patient',
  'offline_access',
  'online_access',
  'patient/*.rs',
  'patient/*.cruds',
  'user/*.rs',
  'user/*.cruds',
  'patient/*.read',
  'patient/*.write',
  'user/*.read',
  'user/*.write',
  // SMART Backend Services (client_credentials): v2, then v1.
  'system/*.rs',
  'system/*.cruds',
  'system/*.read',
  'system/*.*',
];

const ALL_AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'];

/**
 * The SMART configuration of a FHIR base whose authorization server is this one. `authMethods`:
 * the token endpoint's client authentication methods to advertise (a sandbox system names the one
 * its client must use).
 */
export function smartConfiguration(issuer: string, authMethods: string[] = ALL_AUTH_METHODS) {
  const asymmetric = authMethods.includes('private_key_jwt');
  return {
    issuer,
    jwks_uri: `${issuer}/oauth2/jwks`,
    authorization_endpoint: `${issuer}/oauth2/authorize`,
    token_endpoint: `${issuer}/oauth2/token`,
    introspection_endpoint: `${issuer}/oauth2/introspect`,
    revocation_endpoint: `${issuer}/oauth2/revoke`,
    token_endpoint_auth_methods_supported: authMethods,
    ...(asymmetric ? { token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGORITHMS } : {}),
    grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials'],
    scopes_supported: SCOPES_SUPPORTED,
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
    capabilities: CAPABILITIES.filter((c) => asymmetric || c !== 'client-confidential-asymmetric'),
  };
}

/**
 * The OpenID Connect discovery document: the SMART configuration and what id_tokens carry.
 * See: https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderMetadata
 */
export function openidConfiguration(issuer: string) {
  return {
    ...smartConfiguration(issuer),
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
    claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'nonce', 'fhirUser'],
  };
}
