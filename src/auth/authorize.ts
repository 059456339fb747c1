/**
 * A SMART authorization request checked, once the app and its redirect_uri are known good: what
 * it may become (the request to store) or the error the app hears at its redirect_uri.
 * See: https://build.fhir.org/ig/HL7/smart-app-launch/app-launch.html#obtain-authorization-code
 */
import type { App } from './apps.ts';
import type { AuthzRequest } from './authz-requests.ts';
import { grantable } from './grantable.ts';
import { isKnownScope } from './scopes.ts';

export type AuthorizeCheck = { error: string; description: string } | { request: Omit<AuthzRequest, 'userId'> };

/**
 * `p`: the request's parameters; `bases`: the FHIR bases the app may ask for (`aud`), the first
 * the one named in the error.
 */
export function checkAuthorize(p: (name: string) => string | undefined, client: App, redirectUri: string, bases: readonly string[]): AuthorizeCheck {
  const fail = (error: string, description: string) => ({ error, description });
  const state = p('state') ?? '';
  if (p('response_type') !== 'code') return fail('unsupported_response_type', 'response_type must be code.');
  if (!state) return fail('invalid_request', 'state is required.');
  if (p('code_challenge_method') !== 'S256' || !/^[A-Za-z0-9_-]{43}$/.test(p('code_challenge') ?? '')) {
    return fail('invalid_request', 'PKCE is required: code_challenge (S256 of the verifier, base64url) with code_challenge_method=S256.');
  }
  const aud = (p('aud') ?? '').replace(/\/+$/, '');
  if (!bases.includes(aud)) return fail('invalid_request', `aud must be this server's FHIR base, ${bases[0]}.`);
  const asked = (p('scope') ?? '').split(' ').filter(Boolean);
  const unknown = asked.filter((s) => !isKnownScope(s));
  if (unknown.length) return fail('invalid_scope', `Unknown scopes: ${unknown.join(' ').slice(0, 200)}.`);
  // The app's registered scopes (none registered: any) bound what it may ask for.
  const scope = grantable(asked, client.scopes).join(' ');
  if (!scope) return fail('invalid_scope', 'No scope was asked for that the app may have.');
  return { request: { appId: client.id, redirectUri, scope, state, codeChallenge: p('code_challenge')!, nonce: p('nonce') ?? null } };
}
