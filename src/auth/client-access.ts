/** FHIR access by client credentials (1upHealth's way): the app acting for one of its users, or for all of them. */
import type { App } from './apps.ts';
import type { AuthStore } from './store.ts';
import type { Access } from './tokens.ts';

/**
 * `who`: the `x-oneup-user-id` the request names, a user of the app (active) or `client` for all
 * of them; 'invalid' for anything else.
 */
export async function clientAccess(auth: AuthStore, client: App, who: string | undefined): Promise<Access | 'invalid'> {
  if (who === 'client') return { app: client, userId: null, scope: 'system/*.*' };
  if (!who) return 'invalid';
  const user = await auth.findUser(client.id, { oneupUserId: who });
  return user?.active ? { app: client, userId: user.id, scope: 'user/*.*' } : 'invalid';
}
