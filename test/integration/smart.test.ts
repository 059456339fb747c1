/**
 * The SMART App Launch authorization server over real HTTP, driven by oauth4webapi (panva's OAuth
 * client) as a SMART app would: discovery, authorize with PKCE and `aud`, a scripted sign-in and
 * consent (the login and consent forms posted as a browser would), the code exchange, the
 * id_token (checked against the JWKS with jose), the patient context, refresh, scopes enforced on
 * FHIR interactions (v1 and v2, with a query filter), and the refusals.
 */
import http from 'node:http';
import t from 'tap';
import smart from 'fhirclient';
import * as oauth from 'oauth4webapi';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { buildTestApp } from '../helper.ts';
import { freePort } from '../pg.ts';
import type { App } from '../../src/auth/store.ts';

const REDIRECT = 'https://app.example/callback';
const port = await freePort();
const issuer = `http://127.0.0.1:${port}`;
const fhirBase = `${issuer}/fhir/r4`;
const app = await buildTestApp(t, { fhirAuth: 'required', baseUrl: issuer });
await app.listen({ port, host: '127.0.0.1' });

const insecure = { [oauth.allowInsecureRequests]: true };
const as = await oauth.processDiscoveryResponse(new URL(issuer), await oauth.discoveryRequest(new URL(issuer), { algorithm: 'oidc', ...insecure }));

/** An app, a user who can sign in, and the user's Patient and Observations (lab and vital). */
async function setup(opts: { public?: boolean; scopes?: string[] } = {}) {
  const { app: client, clientSecret } = await app.auth.createApp({
    name: 'Growth Chart',
    redirectUris: [REDIRECT],
    public: opts.public,
    scopes: opts.scopes,
  });
  const user = (await app.auth.createUser(client.id, `person-${client.id}`))!;
  await app.auth.setPassword(client.id, user.id, `amy${client.id}`, 'correct horse battery');
  // The user's records, written as the user (the storage layer, not HTTP: a public app has no token yet).
  const ctx = { partitionId: client.id, ownerId: user.id, baseUrl: fhirBase };
  const post = async (body: { resourceType: string; [k: string]: unknown }) =>
    JSON.parse((await app.fhir.create(ctx, body.resourceType, body, {})).stored.json!);
  const patient = await post({ resourceType: 'Patient', name: [{ family: 'Shaw', given: ['Amy'] }] });
  const obs = (category: string) => ({
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category }] }],
    code: { coding: [{ system: 'http://loinc.org', code: category === 'laboratory' ? '2339-0' : '8302-2' }] },
    subject: { reference: `Patient/${patient.id}` },
  });
  await post(obs('laboratory'));
  await post(obs('vital-signs'));
  return { client, clientSecret, user, patientId: patient.id as string, username: `amy${client.id}` };
}

/** The hidden `request` field of a login or consent page. */
function requestField(html: string): string {
  const m = /name="request" value="([0-9a-f]{64})"/.exec(html);
  if (!m) throw new Error(`no sign-in form in: ${html.slice(0, 300)}`);
  return m[1];
}

const form = (fields: Record<string, string>) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields),
  redirect: 'manual' as const,
});

/** A person signs in and answers the consent; the app's redirect_uri with the answer. */
async function signIn(authorizeUrl: URL, username: string, password: string, decision = 'approve'): Promise<URL> {
  const login = await fetch(authorizeUrl, { redirect: 'manual' });
  if (login.status !== 200)
    throw new Error(`authorize answered ${login.status}: ${login.headers.get('location') ?? (await login.text()).slice(0, 300)}`);
  const consent = await fetch(`${issuer}/oauth2/authorize/login`, form({ request: requestField(await login.text()), username, password }));
  if (consent.status !== 200) throw new Error(`login answered ${consent.status}`);
  const done = await fetch(`${issuer}/oauth2/authorize/consent`, form({ request: requestField(await consent.text()), decision }));
  return new URL(done.headers.get('location')!);
}

function authorizeUrl(client: App, scope: string, pkce: { challenge: string }, extra: Record<string, string> = {}): URL {
  const u = new URL(as.authorization_endpoint!);
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: client.clientId,
    redirect_uri: REDIRECT,
    scope,
    state: 'st-123',
    aud: fhirBase,
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
    nonce: 'n-456',
    ...extra,
  })) {
    u.searchParams.set(k, v);
  }
  return u;
}

async function launch(s: Awaited<ReturnType<typeof setup>>, scope: string) {
  const verifier = oauth.generateRandomCodeVerifier();
  const back = await signIn(
    authorizeUrl(s.client, scope, { challenge: await oauth.calculatePKCECodeChallenge(verifier) }),
    s.username,
    'correct horse battery',
  );
  const oclient: oauth.Client = { client_id: s.client.clientId };
  const params = oauth.validateAuthResponse(as, oclient, back, 'st-123');
  const auth = s.client.public ? oauth.None() : oauth.ClientSecretPost(s.clientSecret);
  const response = await oauth.authorizationCodeGrantRequest(as, oclient, auth, params, REDIRECT, verifier, insecure);
  const wantsId = scope.split(' ').includes('openid');
  const tokens = await oauth.processAuthorizationCodeResponse(as, oclient, response, {
    expectedNonce: wantsId ? 'n-456' : oauth.expectNoNonce,
    requireIdToken: wantsId,
  });
  return { tokens, oclient, auth };
}

const fhir = (token: string, path: string, init: RequestInit = {}) =>
  fetch(`${fhirBase}/${path}`, {
    ...init,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', ...(init.headers ?? {}) },
  });

t.test('discovery: smart-configuration lists the endpoints and capabilities SMART clients look for', async (t) => {
  const conf = await (await fetch(`${fhirBase}/.well-known/smart-configuration`)).json();
  t.equal(conf.issuer, issuer);
  t.equal(conf.authorization_endpoint, `${issuer}/oauth2/authorize`);
  t.same(conf.code_challenge_methods_supported, ['S256']);
  for (const c of [
    'launch-standalone',
    'client-public',
    'client-confidential-symmetric',
    'context-standalone-patient',
    'permission-patient',
    'permission-offline',
    'permission-v1',
    'permission-v2',
    'sso-openid-connect',
    'authorize-post',
  ]) {
    t.ok(conf.capabilities.includes(c), c);
  }
  t.equal((await fetch(`${issuer}/r4/.well-known/smart-configuration`)).status, 200);
  t.equal((await (await fetch(conf.jwks_uri)).json()).keys[0].alg, 'RS256');
});

t.test('standalone launch: code with PKCE, patient context, id_token with fhirUser, refresh with offline_access', async (t) => {
  const s = await setup();
  const { tokens, oclient, auth } = await launch(s, 'launch/patient openid fhirUser offline_access patient/*.rs');
  t.equal(tokens.patient, s.patientId, 'the token response names the patient');
  t.ok(tokens.refresh_token, 'offline_access gives a refresh token');
  const { payload, protectedHeader } = await jwtVerify(tokens.id_token!, createRemoteJWKSet(new URL(as.jwks_uri!)), {
    issuer,
    audience: s.client.clientId,
  });
  t.equal(protectedHeader.alg, 'RS256');
  t.equal(payload.fhirUser, `${fhirBase}/Patient/${s.patientId}`);
  t.equal(payload.nonce, 'n-456');
  t.equal(payload.sub, s.user.id);

  const read = await fhir(tokens.access_token, `Patient/${s.patientId}`);
  t.equal(read.status, 200);
  t.equal((await (await fhir(tokens.access_token, `Observation?patient=${s.patientId}`)).json()).total, 2);

  const refreshed = await oauth.processRefreshTokenResponse(
    as,
    oclient,
    await oauth.refreshTokenGrantRequest(as, oclient, auth, tokens.refresh_token!, insecure),
  );
  t.equal(refreshed.patient, s.patientId, 'the patient context survives a refresh');
  t.equal((await fhir(refreshed.access_token, `Patient/${s.patientId}`)).status, 200);
});

t.test('scopes: v1 read-only refuses writes, v2 filters narrow searches, missing types are refused', async (t) => {
  const s = await setup();
  const v1 = (await launch(s, 'launch/patient patient/*.read')).tokens;
  t.notOk(v1.refresh_token, 'no offline_access, no refresh token');
  t.equal((await fhir(v1.access_token, `Patient/${s.patientId}`)).status, 200);
  const write = await fhir(v1.access_token, 'Observation', {
    method: 'POST',
    body: JSON.stringify({ resourceType: 'Observation', status: 'final', code: { text: 'x' } }),
  });
  t.equal(write.status, 403);
  t.equal((await write.json()).resourceType, 'OperationOutcome');
  const bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } }],
  };
  t.equal(
    (await fhir(v1.access_token, '', { method: 'POST', body: JSON.stringify(bundle) })).status,
    403,
    'a write inside a transaction is refused too',
  );

  const labs = (
    await launch(s, 'launch/patient patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory')
  ).tokens;
  const found = await (await fhir(labs.access_token, `Observation?patient=${s.patientId}`)).json();
  t.equal(found.total, 1, 'the filter of the scope narrows the search');
  t.equal(found.entry[0].resource.category[0].coding[0].code, 'laboratory');
  t.equal((await fhir(labs.access_token, `Patient/${s.patientId}`)).status, 403, 'Patient is not in the scopes');
  t.equal((await fhir(labs.access_token, 'Observation', { method: 'POST', body: '{}' })).status, 403);
});

t.test('a public app: PKCE alone, no secret', async (t) => {
  const s = await setup({ public: true });
  const { tokens } = await launch(s, 'launch/patient patient/*.rs');
  t.equal((await fhir(tokens.access_token, `Patient/${s.patientId}`)).status, 200);
  const cc = await fetch(`${issuer}/oauth2/token`, form({ grant_type: 'client_credentials', client_id: s.client.clientId }));
  t.equal(cc.status, 400, 'a public app gets no app token');
});

t.test('refusals: wrong redirect_uri, no PKCE, wrong aud, wrong password, denied consent, wrong verifier, replayed code', async (t) => {
  const s = await setup();
  const pkce = { challenge: await oauth.calculatePKCECodeChallenge(oauth.generateRandomCodeVerifier()) };
  const unregistered = await fetch(authorizeUrl(s.client, 'patient/*.rs', pkce, { redirect_uri: 'https://evil.example/cb' }), { redirect: 'manual' });
  t.equal(unregistered.status, 400, 'an unregistered redirect_uri is shown a page, never redirected to');
  t.notOk(unregistered.headers.get('location'));

  const noPkce = authorizeUrl(s.client, 'patient/*.rs', pkce);
  noPkce.searchParams.delete('code_challenge');
  const r1 = await fetch(noPkce, { redirect: 'manual' });
  t.equal(r1.status, 302);
  t.equal(new URL(r1.headers.get('location')!).searchParams.get('error'), 'invalid_request');
  const r2 = await fetch(authorizeUrl(s.client, 'patient/*.rs', pkce, { aud: 'https://other.example/fhir' }), { redirect: 'manual' });
  t.match(new URL(r2.headers.get('location')!).searchParams.get('error_description'), /aud/);

  const login = await fetch(authorizeUrl(s.client, 'patient/*.rs', pkce));
  const wrong = await fetch(
    `${issuer}/oauth2/authorize/login`,
    form({ request: requestField(await login.text()), username: s.username, password: 'wrong password' }),
  );
  t.equal(wrong.status, 401);
  t.match(await wrong.text(), /username or password is wrong/);

  const denied = await signIn(authorizeUrl(s.client, 'patient/*.rs', pkce), s.username, 'correct horse battery', 'deny');
  t.equal(denied.searchParams.get('error'), 'access_denied');
  t.equal(denied.searchParams.get('state'), 'st-123');

  const verifier = oauth.generateRandomCodeVerifier();
  const back = await signIn(
    authorizeUrl(s.client, 'patient/*.rs', { challenge: await oauth.calculatePKCECodeChallenge(verifier) }),
    s.username,
    'correct horse battery',
  );
  const code = back.searchParams.get('code')!;
  const exchange = (v: string) =>
    fetch(
      `${issuer}/oauth2/token`,
      form({
        grant_type: 'authorization_code',
        code,
        redirect_uri: REDIRECT,
        code_verifier: v,
        client_id: s.client.clientId,
        client_secret: s.clientSecret,
      }),
    );
  const bad = await exchange(oauth.generateRandomCodeVerifier());
  t.equal(bad.status, 400);
  t.equal((await bad.json()).error, 'invalid_grant');
  t.equal((await exchange(verifier)).status, 200);
  t.equal((await exchange(verifier)).status, 400, 'a code works once');
});

t.test('fhirclient (SMART on FHIR JavaScript client) as the app: authorize, ready, read the patient', async (t) => {
  // The app: a Node server using fhirclient's Node adapter, its session kept in a Map.
  const session = new Map<string, unknown>();
  const storage = {
    get: async (k: string) => session.get(k),
    set: async (k: string, v: unknown) => void session.set(k, v),
    unset: async (k: string) => session.delete(k),
  };
  const appPort = await freePort();
  const appUrl = `http://127.0.0.1:${appPort}`;
  const { app: client, clientSecret } = await app.auth.createApp({ name: 'fhirclient app', redirectUris: [`${appUrl}/callback`] });
  const user = (await app.auth.createUser(client.id, 'fc-person'))!;
  await app.auth.setPassword(client.id, user.id, 'fcuser', 'correct horse battery');
  const stored = await app.fhir.create(
    { partitionId: client.id, ownerId: user.id, baseUrl: fhirBase },
    'Patient',
    { resourceType: 'Patient', name: [{ family: 'Client', given: ['Fhir'] }] },
    {},
  );
  const patientId = stored.stored.id;

  const server = http.createServer(async (req, res) => {
    try {
      if (req.url === '/launch') {
        await smart(req, res, storage).authorize({
          iss: fhirBase,
          clientId: client.clientId,
          clientSecret,
          redirectUri: '/callback',
          scope: 'launch/patient openid fhirUser patient/*.rs',
          pkceMode: 'required',
        });
      } else {
        const c = await smart(req, res, storage).ready();
        const patient = await c.patient.read();
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ patient: c.patient.id, family: patient.name?.[0]?.family, fhirUser: c.getFhirUser() }));
      }
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
  });
  await new Promise<void>((r) => server.listen(appPort, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));

  const toAuthorize = await fetch(`${appUrl}/launch`, { redirect: 'manual' });
  t.equal(toAuthorize.status, 302, 'fhirclient discovered the server and redirected to authorize');
  const authorize = new URL(toAuthorize.headers.get('location')!);
  t.equal(authorize.origin + authorize.pathname, `${issuer}/oauth2/authorize`);
  t.equal(authorize.searchParams.get('code_challenge_method'), 'S256');
  const back = await signIn(authorize, 'fcuser', 'correct horse battery');
  t.equal(back.origin, appUrl);
  const done = await fetch(back);
  const body = await done.text();
  t.equal(done.status, 200, body);
  t.same(JSON.parse(body), { patient: patientId, family: 'Client', fhirUser: `Patient/${patientId}` });
});
