/**
 * A person's SMART sign-in to a pending authorization request: the password (limited per username
 * and per address, see signin-limit.ts; AUTHZ_REQUEST_FAILURES wrong ones end the request), then
 * their consent, which makes the app's code.
 */
import type { App } from './apps.ts';
import type { AuthzRequest } from './authz-requests.ts';
import type { Lock, SigninKeys, SigninLimit } from './signin-limit.ts';
import type { AuthStore } from './store.ts';
import type { User } from './users.ts';

export type SignIn =
  /** Locked before the password was checked. */
  | { outcome: 'locked'; lock: Lock }
  /** A wrong password, the request's last: it has ended (`lock`: one this failure caused). */
  | { outcome: 'ended'; lock?: Lock }
  /** A wrong password (`lock`: one this failure caused). */
  | { outcome: 'wrong'; lock?: Lock }
  | { outcome: 'signed-in'; user: User };

/**
 * Checks the password of `keys.username` for the request `requestId`. Wrong passwords are limited
 * per username and per address (in PostgreSQL, for every process); a locked sign-in is refused
 * before the password is even checked.
 */
export async function signIn(deps: { auth: AuthStore; limit: SigninLimit }, requestId: string, keys: SigninKeys, password: string): Promise<SignIn> {
  const held = await deps.limit.begin(keys);
  if (held) return { outcome: 'locked', lock: held };
  const checkable = keys.username.length <= 200 && password.length <= 1000;
  const user = checkable ? await deps.auth.checkPassword(keys.appId, keys.username, password) : undefined;
  if (!user) {
    const lock = await deps.limit.failed(keys);
    if (await deps.auth.failedSignIn(requestId)) return { outcome: 'ended', lock };
    return { outcome: 'wrong', lock };
  }
  await deps.limit.succeeded(keys);
  await deps.auth.signInRequest(requestId, user.id);
  return { outcome: 'signed-in', user };
}

/** The code of an approved request, with the person's Patient (if any) as its patient context. */
export async function approvedCode(auth: AuthStore, client: App, r: AuthzRequest & { userId: string }): Promise<string> {
  const patientId = (await auth.patientOf(client.id, r.userId)) ?? null;
  return auth.newCode(client.id, r.userId, r.scope, { redirectUri: r.redirectUri, codeChallenge: r.codeChallenge, nonce: r.nonce, patientId });
}
