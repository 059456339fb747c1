/**
 * The grants of the token endpoint: authorization_code, refresh_token and client_credentials
 * (a public app: the first two only). Errors are OAuthErrors, as the endpoint answers them.
 * See: https://www.rfc-editor.org/rfc/rfc6749#section-4
 */
import type { App } from './apps.ts';
import type { Granted } from './codes.ts';
import { OAuthError } from './oauth-error.ts';
import { covers, parseScope, type ResourceScope } from './scopes.ts';
import type { AuthStore } from './store.ts';
import type { TokenSet } from './tokens.ts';

/** What a client_credentials token is granted when it asks for no scope (1upHealth's apps ask none). */
export const DEFAULT_CLIENT_SCOPE = 'system/*.*';

/** Longer than any honest list of system scopes; the scope is stored with every token. */
const MAX_SCOPE_LENGTH = 4000;

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
  if (grant === 'client_credentials') return auth.clientToken(client, clientCredentialsScope(param('scope'), client.scopes));
  throw new OAuthError(
    grant ? 'unsupported_grant_type' : 'invalid_request',
    grant
      ? `grant_type ${grant.slice(0, 50)} is not supported; use authorization_code, refresh_token or client_credentials.`
      : 'grant_type is required.',
  );
}

/**
 * The scope a client_credentials token is granted (SMART Backend Services): the system scopes
 * asked for, v1 (`system/*.read`, `system/Observation.read`, `system/*.*`) or v2 (`system/*.rs`,
 * `system/Observation.rs?category=laboratory`), as asked; none asked: the app's registered system
 * scopes, or DEFAULT_CLIENT_SCOPE when it registered none. An app that registered system scopes
 * gets those of the asked ones they cover (OAuth lets a server grant less; the answer's `scope`
 * says what it got). Any other scope asked is invalid_scope: a token for no user has no patient,
 * user or sign-in to speak of.
 * See: https://hl7.org/fhir/smart-app-launch/backend-services.html#scopes,
 * https://www.rfc-editor.org/rfc/rfc6749#section-3.3
 */
export function clientCredentialsScope(asked: string | undefined, registered: readonly string[]): string {
  const own = registered.map(parseScope).filter((s): s is ResourceScope => s?.context === 'system');
  if (asked !== undefined && asked.length > MAX_SCOPE_LENGTH)
    throw new OAuthError(
      'invalid_scope',
      `scope is longer than ${MAX_SCOPE_LENGTH} characters; ask for fewer scopes (system/*.read covers every type).`,
    );
  const words = [...new Set((asked ?? '').split(' ').filter(Boolean))];
  if (!words.length) return own.length ? own.map((s) => s.text).join(' ') : DEFAULT_CLIENT_SCOPE;
  const parsed = words.map((w) => ({ w, s: parseScope(w) }));
  const bad = parsed.filter((p) => p.s?.context !== 'system').map((p) => p.w);
  if (bad.length) {
    throw new OAuthError(
      'invalid_scope',
      `client_credentials grants system scopes of FHIR resource types only, such as system/*.read, system/Observation.read (SMART v1) or system/*.rs, system/Observation.rs (v2); ask without ${bad.join(' ').slice(0, 200)}.`,
    );
  }
  if (!own.length) return words.join(' ');
  const granted = parsed.filter((p) => own.some((o) => covers(o, p.s!))).map((p) => p.w);
  if (!granted.length) {
    throw new OAuthError(
      'invalid_scope',
      `None of the scopes asked for is one this app may have; it is registered for ${own
        .map((s) => s.text)
        .join(' ')
        .slice(0, 300)}: ask for those, or for narrower ones.`,
    );
  }
  return granted.join(' ');
}
