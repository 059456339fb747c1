/**
 * The grants of the token endpoint: authorization_code, refresh_token and client_credentials
 * (a public app: the first two only). Errors are OAuthErrors, as the endpoint answers them.
 * See: https://www.rfc-editor.org/rfc/rfc6749#section-4
 */
import type { App } from './apps.ts';
import type { Granted } from './codes.ts';
import { OAuthError } from './oauth-error.ts';
import type { AuthStore } from './store.ts';
import type { TokenSet } from './tokens.ts';

/** `param`: the request's parameters; `idToken`: the id_token of a code's grant, if any. */
export async function grantTokens(
  auth: AuthStore,
  client: App,
  param: (name: string) => string | undefined,
  idToken: (g: Granted) => Promise<string | undefined>,
): Promise<TokenSet> {
  const grant = param('grant_type');
  if (grant === 'authorization_code') {
    const code = param('code');
    if (!code) throw new OAuthError('invalid_request', 'code is required.');
    const proof = { redirectUri: param('redirect_uri'), codeVerifier: param('code_verifier') };
    return auth.exchangeCode(client, code, proof, idToken);
  }
  if (client.public && grant !== 'refresh_token')
    throw new OAuthError('unauthorized_client', 'A public app may use authorization_code and refresh_token only.');
  if (grant === 'refresh_token') {
    const refresh = param('refresh_token');
    if (!refresh) throw new OAuthError('invalid_request', 'refresh_token is required.');
    return auth.refresh(client, refresh);
  }
  if (grant === 'client_credentials') return auth.clientToken(client);
  throw new OAuthError(
    grant ? 'unsupported_grant_type' : 'invalid_request',
    grant
      ? `grant_type ${grant.slice(0, 50)} is not supported; use authorization_code, refresh_token or client_credentials.`
      : 'grant_type is required.',
  );
}
