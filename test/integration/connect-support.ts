/**
 * A person connecting through the connect flow, as a browser would go (over real HTTP, redirects
 * followed by hand): the connect URL, the system's sign-in and consent forms, the callback.
 */
import type { Test } from 'tap';

export const get = (url: string) => fetch(url, { redirect: 'manual' });
export const postForm = (url: string, fields: Record<string, string>) =>
  fetch(url, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields) });
export const location = (res: Response, base: string) => new URL(res.headers.get('location')!, base);

/** From the connect URL to the system's callback: sign in as the patient, then approve or deny. */
export async function signIn(t: Test, base: string, startUrl: string, username: string, password: string, decision = 'approve'): Promise<URL> {
  const start = await get(startUrl);
  t.equal(start.status, 302, 'the connect URL sends the person to the system');
  const body = await (await get(location(start, base).toString())).text();
  const request = /name="request" value="([0-9a-f]{64})"/.exec(body)![1];
  await postForm(`${base}/oauth2/authorize/login`, { request, username, password });
  return location(await postForm(`${base}/oauth2/authorize/consent`, { request, decision }), base);
}
