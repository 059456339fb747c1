/**
 * Who the client at the token endpoint is (and the introspection and revocation endpoints): a
 * client assertion (private_key_jwt, RFC 7523), its secret by HTTP Basic or as a parameter
 * (either, unless the app is bound to one), or nothing for a public app.
 * See: https://www.rfc-editor.org/rfc/rfc6749#section-2.3, https://www.rfc-editor.org/rfc/rfc7523#section-2.2
 */
import type { App } from './apps.ts';
import { OAuthError } from './oauth-error.ts';
import type { AuthStore } from './store.ts';

export const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/**
 * The app a client assertion proves; `audiences`: the token endpoints it may name, the first the
 * one named in the error. Throws the invalid_client OAuthError (401) when it proves none, saying
 * why: SMART Backend Services answers every failure of client authentication so.
 * See: https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html#response
 */
export async function assertedClient(auth: AuthStore, assertionType: string, assertion: string | undefined, audiences: string[]): Promise<App> {
  if (assertionType !== JWT_BEARER) {
    throw new OAuthError('invalid_client', `client_assertion_type must be ${JWT_BEARER}, the only kind of client assertion this server takes.`);
  }
  if (!assertion) throw new OAuthError('invalid_client', 'client_assertion is required with client_assertion_type: send the signed JWT.');
  const checked = await auth.authenticateAssertion(assertion, audiences);
  if ('problem' in checked) throw new OAuthError('invalid_client', checked.problem);
  return checked.client;
}

/**
 * The client authenticated by its secret (or a public one by its client_id; undefined: neither),
 * checked against how it registered to send it; `via`: how the request carried the secret.
 */
export function secretClient(client: App | undefined, via: 'basic' | 'post' | 'headers' | undefined): App {
  if (!client) throw new OAuthError('invalid_client', 'client_id and client_secret are missing or wrong.');
  const wanted = client.tokenAuthMethod;
  if (wanted === 'private_key_jwt')
    throw new OAuthError('invalid_client', 'This app authenticates with a client assertion (private_key_jwt), not a secret.');
  if (wanted === 'client_secret_basic' && via !== 'basic')
    throw new OAuthError('invalid_client', 'This app sends its secret with HTTP Basic (client_secret_basic).');
  if (wanted === 'client_secret_post' && via !== 'post')
    throw new OAuthError('invalid_client', 'This app sends its secret as the client_secret parameter (client_secret_post).');
  return client;
}
