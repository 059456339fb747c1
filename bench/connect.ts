/**
 * The connect flow as a person goes through it, for the sync benches: an app user's token, the
 * connect URL, the sandbox's sign-in and consent, and the callback; and who can sign in where.
 */
import { generateSystem, type GenerateOptions, type SandboxPatient } from '../src/sandbox/generate.ts';
import type { SandboxDefinition } from '../src/sandbox/systems.ts';

/**
 * The patients of a sandbox system (their usernames and passwords), as the server generates them:
 * from the system's seed, with SANDBOX_YEARS (`years`) unless the system keeps its own.
 */
export function sandboxPatients(def: SandboxDefinition, years: number): SandboxPatient[] {
  // The vendors' own fields (src/sandbox/systems.ts), read loosely: a server without them ignores them.
  const own = def as SandboxDefinition & {
    years?: number;
    generate?: { vendor?: GenerateOptions['vendor'] };
    records?: (o: GenerateOptions) => { patients: SandboxPatient[] };
  };
  const o: GenerateOptions = {
    seed: def.seed,
    patients: def.patients,
    idPrefix: def.idPrefix,
    systemName: def.title,
    years: Math.min(own.years ?? years, years),
    vendor: own.generate?.vendor,
  };
  return (own.records ?? generateSystem)(o).patients;
}

const get = (url: string) => fetch(url, { redirect: 'manual' });
const form = (url: string, fields: Record<string, string>) =>
  fetch(url, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields),
  });

export interface BenchApp {
  clientId: string;
  clientSecret: string;
}

/** A new app of the server (admin API). */
export async function benchApp(base: string, adminKey: string): Promise<BenchApp> {
  const made = await fetch(`${base}/admin/apps`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench', redirect_uris: ['https://app.example/cb'] }),
  });
  if (made.status !== 201 && made.status !== 200) throw new Error(`the app was not made: ${made.status} ${await made.text()}`);
  const { client_id, client_secret } = (await made.json()) as { client_id: string; client_secret: string };
  return { clientId: client_id, clientSecret: client_secret };
}

/**
 * Makes app user `appUserId`, connects it to the system `systemId` as the sandbox patient
 * (username, password), and answers the user's access token. The sandbox writes its records in the
 * background after a start: while its sign-in says it is still loading (503), this tries again (for up to 5 minutes).
 */
export async function connectUser(
  base: string,
  app: BenchApp,
  appUserId: string,
  systemId: string,
  username: string,
  password: string,
): Promise<string> {
  const { clientId: client_id, clientSecret: client_secret } = app;
  const next = (res: Response) => new URL(res.headers.get('location')!, base).toString();
  const made = await form(`${base}/user-management/v1/user`, { client_id, client_secret, app_user_id: appUserId });
  if (made.status !== 200) throw new Error(`the user was not made: ${made.status} ${(await made.text()).slice(0, 300)}`);
  const user = (await made.json()) as { code: string };
  const { access_token } = (await (
    await form(`${base}/oauth2/token`, { client_id, client_secret, code: user.code, grant_type: 'authorization_code' })
  ).json()) as { access_token: string };
  let callback = '';
  // The connect cookie of the last start, which the callback needs as a browser would send it.
  let cookie = '';
  for (let i = 0; i < 600 && !callback; i++) {
    const start = await get(`${base}/connect/system/clinical/${systemId}?client_id=${client_id}&access_token=${access_token}`);
    cookie = start.headers
      .getSetCookie()
      .map((c) => c.split(';')[0])
      .join('; ');
    if (start.status !== 302 && start.status !== 303)
      throw new Error(`the connect URL answered ${start.status}: ${(await start.text()).slice(0, 300)}`);
    const page = await (await get(next(start))).text();
    const request = /name="request" value="([0-9a-f]{64})"/.exec(page)?.[1];
    if (!request) throw new Error(`no sign-in form at the system: ${page.slice(0, 300)}`);
    const login = await form(`${base}/oauth2/authorize/login`, { request, username, password });
    if (login.status === 200) callback = next(await form(`${base}/oauth2/authorize/consent`, { request, decision: 'approve' }));
    else if (login.status === 503) await new Promise((r) => setTimeout(r, 500));
    else throw new Error(`${username} could not sign in at ${systemId}: ${login.status}`);
  }
  if (!callback) throw new Error(`${username} could not sign in at ${systemId}`);
  const back = new URL(next(await fetch(callback, { redirect: 'manual', headers: { cookie } })));
  if (back.searchParams.get('success') !== 'true') throw new Error(`connect failed: ${back.searchParams.get('error_description')}`);
  return access_token;
}
