/**
 * A person connecting through the connect flow, as a browser would go (over real HTTP, redirects
 * followed by hand): the connect URL, the system's sign-in and consent forms, the callback. The
 * browser keeps the cookies it is sent, as a browser does: per host and path, until their
 * Max-Age, Secure ones only over https; the connect flow binds its sign-ins to them.
 */
import type { Test } from 'tap';
import { DEFAULT_SANDBOXES, type SandboxDefinition } from '../../src/sandbox/systems.ts';

const variant = (name: string, auth: SandboxDefinition['auth'], idPrefix: string): SandboxDefinition => ({
  ...DEFAULT_SANDBOXES[0],
  name,
  title: `${name} (sandbox)`,
  directoryId: `sandbox-${name}`,
  clientId: `tributary-${name}`,
  auth,
  seed: name,
  idPrefix,
});
/**
 * The sandboxes a connect test goes through: the two shipped ones (client_secret_basic, a public
 * client) and two more that take client_secret_post and private_key_jwt; two patients each.
 */
export const CONNECT_SANDBOXES: SandboxDefinition[] = [
  ...DEFAULT_SANDBOXES.filter((d) => !d.vendor),
  variant('post-clinic', 'client_secret_post', 'pc'),
  variant('key-clinic', 'private_key_jwt', 'kc'),
].map((d) => ({ ...d, patients: 2 }));

interface Cookie {
  value: string;
  host: string;
  path: string;
  secure: boolean;
  expires: number;
}

/** One browser's cookie jar. `get` and `postForm` send what applies and keep what is set. */
export class Browser {
  private readonly jar = new Map<string, Cookie>();

  /** The value of a cookie this browser holds, or undefined. */
  cookie(name: string): string | undefined {
    return [...this.jar].find(([k, c]) => k.endsWith(`\n${name}`) && c.expires > Date.now())?.[1].value;
  }

  async fetch(url: string, init: RequestInit = {}): Promise<Response> {
    const u = new URL(url);
    const headers = new Headers(init.headers);
    const sent = [...this.jar]
      .filter(
        ([, c]) =>
          c.host === u.host &&
          c.expires > Date.now() &&
          (u.pathname === c.path || u.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`)) &&
          (!c.secure || u.protocol === 'https:'),
      )
      .map(([k, c]) => `${k.split('\n')[2]}=${c.value}`);
    if (sent.length) headers.set('cookie', sent.join('; '));
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const line of res.headers.getSetCookie()) this.keep(u, line);
    return res;
  }

  get = (url: string) => this.fetch(url);
  postForm = (url: string, fields: Record<string, string>) =>
    this.fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields) });

  private keep(u: URL, line: string): void {
    const [pair, ...attrs] = line.split(';').map((s) => s.trim());
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq);
    const attr = (k: string) => attrs.find((a) => a.toLowerCase().startsWith(`${k}=`))?.slice(k.length + 1);
    const maxAge = attr('max-age');
    const path = attr('path') || u.pathname.replace(/\/[^/]*$/, '') || '/';
    const key = `${u.host}\n${path}\n${name}`;
    const expires = maxAge !== undefined ? Date.now() + Number(maxAge) * 1000 : Infinity;
    if (expires <= Date.now()) this.jar.delete(key);
    else this.jar.set(key, { value: pair.slice(eq + 1), host: u.host, path, secure: attrs.some((a) => a.toLowerCase() === 'secure'), expires });
  }
}

/** The browser of a test file's people, unless a test opens another. */
export const browser = new Browser();
export const get = (url: string) => browser.get(url);
export const postForm = (url: string, fields: Record<string, string>) => browser.postForm(url, fields);
export const location = (res: Response, base: string) => new URL(res.headers.get('location')!, base);

/** From the connect URL to the system's callback: sign in as the patient, then approve or deny (in `using`, the file's browser unless named). */
export async function signIn(
  t: Test,
  base: string,
  startUrl: string,
  username: string,
  password: string,
  decision = 'approve',
  using: Browser = browser,
): Promise<URL> {
  const start = await using.get(startUrl);
  t.equal(start.status, 302, 'the connect URL sends the person to the system');
  const body = await (await using.get(location(start, base).toString())).text();
  const request = /name="request" value="([0-9a-f]{64})"/.exec(body)![1];
  await using.postForm(`${base}/oauth2/authorize/login`, { request, username, password });
  return location(await using.postForm(`${base}/oauth2/authorize/consent`, { request, decision }), base);
}
