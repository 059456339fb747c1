/**
 * The sign-in and consent pages' Content-Security-Policy, and CORS, without a browser (the browser
 * tests in test/browser/ show what they are for): form-action names exactly 'self' and the origin
 * the request's answer will be redirected to (a SMART app's redirect_uri; for a sandbox, also the
 * app the connect callback goes back to) and nothing else; CORS answers other origins on the
 * metadata, the FHIR API and (registered origins only) the token endpoint, never with credentials.
 */
import t from 'tap';
import { buildApp } from '../../src/app.ts';
import { DEFAULT_SANDBOXES } from '../../src/sandbox/systems.ts';
import { generateSystem } from '../../src/sandbox/generate.ts';
import { formActionSource, signInPolicy } from '../../plugins/smart.ts';
import { corsKind } from '../../plugins/cors.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';
import { get, postForm } from './connect-support.ts';

const NV = { ...DEFAULT_SANDBOXES[0], patients: 2 };
const port = await freePort();
const BASE = `http://127.0.0.1:${port}`;
const app = await buildApp(testConfig(await testDatabase(t), { baseUrl: BASE, sandboxes: true, sandboxSystems: [NV], fhirAuth: 'required' }), {
  logger: false,
});
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());
await app.sandboxesLoaded;

const APP_ORIGIN = 'http://app.example:3000';
const { app: client } = await app.auth.createApp({ name: 'Growth Chart', redirectUris: [`${APP_ORIGIN}/callback`] });
const user = (await app.auth.createUser(client.id, 'amy'))!;
await app.auth.setPassword(client.id, user.id, 'amy', 'correct horse battery');
const { app: native } = await app.auth.createApp({ name: 'Native', redirectUris: ['com.example.growth:/callback'], public: true });

/** The form-action sources of a response's CSP, and the policy without them. */
function formAction(res: Response): { sources: string[]; rest: string } {
  const csp = res.headers.get('content-security-policy') ?? '';
  const m = /(?:^|;\s*)form-action ([^;]*)/.exec(csp);
  return { sources: (m?.[1] ?? '').trim().split(/\s+/).filter(Boolean).sort(), rest: csp.replace(/form-action [^;]*/, 'form-action …') };
}
const STRICT = "default-src 'none'; style-src 'unsafe-inline'; form-action …; frame-ancestors 'none'";
const requestOf = async (res: Response) => /name="request" value="([0-9a-f]{64})"/.exec(await res.text())![1];

function authorizeUrl(clientId: string, redirectUri: string): string {
  const u = new URL(`${BASE}/oauth2/authorize`);
  const p = {
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    scope: 'launch/patient patient/*.read',
    state: 'st',
    aud: `${BASE}/fhir/r4`,
    code_challenge: 'A'.repeat(43),
    code_challenge_method: 'S256',
  };
  for (const [k, v] of Object.entries(p)) u.searchParams.set(k, v);
  return u.toString();
}

t.test("a SMART app's sign-in and consent: form-action is 'self' and the app's origin, nothing else", async (t) => {
  const signIn = await get(authorizeUrl(client.clientId, `${APP_ORIGIN}/callback`));
  t.equal(signIn.status, 200);
  t.same(formAction(signIn).sources, ["'self'", APP_ORIGIN].sort());
  t.equal(formAction(signIn).rest, STRICT, 'the rest of the policy stays strict: no script, no framing');
  const request = await requestOf(signIn);
  const wrong = await postForm(`${BASE}/oauth2/authorize/login`, { request, username: 'amy', password: 'wrong password' });
  t.equal(wrong.status, 401);
  t.same(formAction(wrong).sources, ["'self'", APP_ORIGIN].sort(), 'the sign-in page again, after a wrong password');
  const consent = await postForm(`${BASE}/oauth2/authorize/login`, { request, username: 'amy', password: 'correct horse battery' });
  t.equal(consent.status, 200);
  t.same(formAction(consent).sources, ["'self'", APP_ORIGIN].sort(), 'the consent page');
  t.equal(formAction(consent).rest, STRICT);
  const answer = await postForm(`${BASE}/oauth2/authorize/consent`, { request, decision: 'approve' });
  t.equal(new URL(answer.headers.get('location')!).origin, APP_ORIGIN, 'and the consent is answered on that origin');
});

t.test("pages before the app is known, or after the request ended, say 'self' only", async (t) => {
  t.same(formAction(await get(authorizeUrl('no-such-app', `${APP_ORIGIN}/callback`))).sources, ["'self'"]);
  t.same(
    formAction(await get(authorizeUrl(client.clientId, 'http://evil.example/callback'))).sources,
    ["'self'"],
    'a redirect_uri the app did not register is not named',
  );
  const expired = await postForm(`${BASE}/oauth2/authorize/login`, { request: 'f'.repeat(64), username: 'amy', password: 'x' });
  t.equal(expired.status, 400);
  t.same(formAction(expired).sources, ["'self'"]);
});

t.test("a native app's private-use scheme is named by its scheme", async (t) => {
  t.same(formAction(await get(authorizeUrl(native.clientId, 'com.example.growth:/callback'))).sources, ["'self'", 'com.example.growth:'].sort());
  t.equal(formActionSource('https://App.Example:443/cb?x=1'), 'https://app.example');
  t.equal(formActionSource('http://[::1]:3000/cb'), undefined, 'CSP has no syntax for an IPv6 literal');
  t.equal(formActionSource('not a url'), undefined);
  t.equal(signInPolicy(), "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
});

t.test("a sandbox's sign-in and consent also name the connecting app's origin (where /connect/callback goes on to)", async (t) => {
  const token = (await app.auth.exchangeCode(client, await app.auth.newCode(client.id, user.id))).access_token;
  const start = await get(`${BASE}/connect/system/clinical/${NV.directoryId}?client_id=${client.clientId}&access_token=${token}`);
  t.equal(start.status, 302);
  const signIn = await get(new URL(start.headers.get('location')!, BASE).toString());
  t.equal(signIn.status, 200);
  // 'self', this server's /connect/callback (the sandbox's redirect_uri), and the app.
  t.same(formAction(signIn).sources, ["'self'", BASE, APP_ORIGIN].sort());
  const p = generateSystem({ seed: NV.seed, patients: NV.patients, idPrefix: NV.idPrefix, systemName: NV.title }).patients.find(
    (x) => x.personKey !== 'shared',
  )!;
  const consent = await postForm(`${BASE}/oauth2/authorize/login`, { request: await requestOf(signIn), username: p.username, password: p.password });
  t.equal(consent.status, 200);
  t.same(formAction(consent).sources, ["'self'", BASE, APP_ORIGIN].sort());
  t.equal(formAction(consent).rest, STRICT);
});

t.test('CORS: the FHIR API answers any origin, without credentials; preflights allow Authorization and Content-Type', async (t) => {
  const origin = 'http://other.example:5000';
  const pre = await fetch(`${BASE}/fhir/r4/Patient`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
  });
  t.equal(pre.status, 204);
  t.equal(pre.headers.get('access-control-allow-origin'), origin);
  t.equal(pre.headers.get('access-control-allow-credentials'), null, 'never with credentials');
  const allowed = (pre.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/,\s*/);
  t.ok(allowed.includes('authorization') && allowed.includes('content-type'), 'Authorization and Content-Type');
  t.match(pre.headers.get('access-control-allow-methods'), /POST/);
  t.match(pre.headers.get('vary'), /Origin/);

  const token = (await app.auth.exchangeCode(client, await app.auth.newCode(client.id, user.id))).access_token;
  const created = await fetch(`${BASE}/fhir/r4/Patient`, {
    method: 'POST',
    headers: { origin, authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient' }),
  });
  t.equal(created.status, 201);
  t.equal(created.headers.get('access-control-allow-origin'), origin);
  t.same(
    (created.headers.get('access-control-expose-headers') ?? '')
      .split(/,\s*/)
      .filter((h) => ['Location', 'ETag', 'Content-Location'].includes(h))
      .sort(),
    ['Content-Location', 'ETag', 'Location'],
    'Location, ETag and Content-Location are readable',
  );
  const read = await fetch(new URL(created.headers.get('location')!, BASE), { headers: { origin, authorization: `Bearer ${token}` } });
  t.equal(read.status, 200);
  t.equal(read.headers.get('access-control-allow-origin'), origin);
  const denied = await fetch(`${BASE}/fhir/r4/Patient`, { headers: { origin } });
  t.equal(denied.status, 401);
  t.equal(denied.headers.get('access-control-allow-origin'), origin, 'a 401 is readable too (the app can tell its token is missing)');
  const conf = await fetch(`${BASE}/fhir/r4/.well-known/smart-configuration`, { headers: { origin } });
  t.equal(conf.headers.get('access-control-allow-origin'), origin, 'the SMART configuration');
  t.equal((await fetch(`${BASE}/oauth2/jwks`, { headers: { origin } })).headers.get('access-control-allow-origin'), origin, 'the JWKS');
  t.equal(
    (await fetch(`${BASE}/fhir/r4/metadata`, { headers: { origin: 'null' } })).headers.get('access-control-allow-origin'),
    null,
    "an opaque origin ('null') is not answered",
  );
});

t.test('CORS: the token endpoint answers the origins of registered redirect URIs only; other routes no origin', async (t) => {
  const preflight = (url: string, origin: string) =>
    fetch(url, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    });
  const ok = await preflight(`${BASE}/oauth2/token`, APP_ORIGIN);
  t.equal(ok.status, 204);
  t.equal(ok.headers.get('access-control-allow-origin'), APP_ORIGIN);
  t.equal(ok.headers.get('access-control-allow-credentials'), null);
  t.equal(
    (await preflight(`${BASE}/oauth2/token`, 'http://app.example:3001')).headers.get('access-control-allow-origin'),
    null,
    'another port is another origin',
  );
  const other = await fetch(`${BASE}/oauth2/token`, {
    method: 'POST',
    headers: { origin: 'http://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=authorization_code&code=x',
  });
  t.equal(other.status, 401, 'the request is still answered (an OAuth error: no client)');
  t.equal(other.headers.get('access-control-allow-origin'), null, 'but not readable by a page on that origin');
  const mine = await fetch(`${BASE}/oauth2/token`, {
    method: 'POST',
    headers: { origin: APP_ORIGIN, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=authorization_code&code=x',
  });
  t.equal(mine.headers.get('access-control-allow-origin'), APP_ORIGIN);
  for (const url of [`${BASE}/user-management/v1/user`, `${BASE}/connect/connections`, `${BASE}/oauth2/introspect`]) {
    const pre = await preflight(url, APP_ORIGIN);
    t.equal(pre.headers.get('access-control-allow-origin'), null, `${new URL(url).pathname}: no CORS`);
    t.equal(pre.status, 404);
  }
  t.same(['/fhir/r4', '/r4/Patient/1', '/fhir/r4x', '/oauth2/token', '/sandbox/x/fhir/r4/Patient'].map(corsKind), [
    'public',
    'public',
    undefined,
    'registered',
    undefined,
  ]);
});
