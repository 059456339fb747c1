/**
 * The built-in sandbox health systems: each an EHR of its own (FHIR base, SMART configuration,
 * branded sign-in, patients with passwords, short-lived tokens, its records), listed in the
 * directory under a fixed id, with Tributary's client registration there; one patient's token
 * reaches that patient's records only, at that system's base only. A SMART standalone launch is
 * run against each, as Tributary's connect flow will: discovery, PKCE, sign-in, consent, and the
 * token exchange with the system's own client authentication (HTTP Basic; a public client).
 */
import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.ts';
import { buildTestApp, testConfig } from '../helper.ts';
import { freePort } from '../pg.ts';
import { generateSystem, STEPS_LOINC } from '../../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES, type SandboxDefinition } from '../../src/sandbox/systems.ts';

// Fewer patients than the shipped systems, for speed; the same definitions otherwise.
// Tributary's own sandboxes (the simulated vendors: test/integration/vendors*.test.ts).
const DEFS: SandboxDefinition[] = DEFAULT_SANDBOXES.filter((d) => !d.vendor).map((d) => ({ ...d, patients: 3 }));
const ADMIN_KEY = randomBytes(32).toString('hex');
const app = await buildTestApp(t, { sandboxes: true, sandboxSystems: DEFS, fhirAuth: 'required', adminKey: ADMIN_KEY });
await app.sandboxesLoaded;
const [NV, LS] = DEFS;
const baseOf = (d: SandboxDefinition) => `/sandbox/${d.name}/fhir/r4`;
const people = (d: SandboxDefinition) => generateSystem({ seed: d.seed, patients: d.patients, idPrefix: d.idPrefix, systemName: d.title }).patients;

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const post = (url: string, fields: Record<string, string>, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, payload: form(fields) });

/** Tributary's secret at a system, as its registration keeps it (sealed). */
async function registrationSecret(d: SandboxDefinition): Promise<string | undefined> {
  const { rows } = await app.pg.query<{ sealed: Buffer | null; auth_method: string }>(
    'SELECT client_secret_sealed AS sealed, auth_method FROM trb_client_registration WHERE system_id = $1',
    [d.directoryId],
  );
  return rows[0]?.sealed ? app.vault.decrypt(rows[0].sealed, d.clientId, 'registration-secret') : undefined;
}

/** A SMART standalone launch against a sandbox, signing in as `username`; the token response. */
async function launch(
  t: Test,
  d: SandboxDefinition,
  username: string,
  password: string,
): Promise<{ access_token: string; refresh_token?: string; patient?: string; expires_in: number }> {
  const conf = (await app.inject({ method: 'GET', url: `${baseOf(d)}/.well-known/smart-configuration` })).json();
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const redirectUri = `${app.config.baseUrl}/connect/callback`;
  const authorize = new URL(conf.authorization_endpoint);
  const q = {
    response_type: 'code',
    client_id: d.clientId,
    redirect_uri: redirectUri,
    scope: 'launch/patient openid fhirUser offline_access patient/*.read',
    state: 'st-1',
    aud: `${app.config.baseUrl}${baseOf(d)}`,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  };
  const page = await app.inject({ method: 'GET', url: `${authorize.pathname}?${form(q)}` });
  t.equal(page.statusCode, 200, 'the sign-in page');
  t.match(page.body, `Sign in to ${d.title}`, "branded with the system's name");
  const request = /name="request" value="([0-9a-f]{64})"/.exec(page.body)![1];
  const wrong = await post('/oauth2/authorize/login', { request, username, password: `${password}x` });
  t.equal(wrong.statusCode, 401, 'a wrong password is refused');
  const consent = await post('/oauth2/authorize/login', { request, username, password });
  t.match(consent.body, 'Tributary asks for', 'consent names Tributary as the one asking');
  const back = await post('/oauth2/authorize/consent', { request, decision: 'approve' });
  const location = new URL(back.headers.location as string);
  t.equal(location.origin + location.pathname, redirectUri);
  t.equal(location.searchParams.get('state'), 'st-1');
  const code = location.searchParams.get('code')!;
  const fields = { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier };
  const secret = await registrationSecret(d);
  const tokenPath = new URL(conf.token_endpoint).pathname;
  if (d.auth === 'client_secret_basic') {
    t.equal(
      (await post(tokenPath, { ...fields, client_id: d.clientId, client_secret: secret! })).statusCode,
      401,
      'the secret as a parameter is refused: this system takes HTTP Basic',
    );
    const basic = `Basic ${Buffer.from(`${d.clientId}:${secret}`).toString('base64')}`;
    // The refused attempt did not spend the code: it never got as far.
    const res = await post(tokenPath, fields, { authorization: basic });
    t.equal(res.statusCode, 200, res.body);
    return res.json();
  }
  t.equal(secret, undefined, 'a public client has no secret');
  const res = await post(tokenPath, { ...fields, client_id: d.clientId });
  t.equal(res.statusCode, 200, res.body);
  return res.json();
}

t.test('each sandbox: in the directory under its fixed id, with its SMART configuration and CapabilityStatement', async (t) => {
  for (const d of DEFS) {
    const { rows } = await app.pg.query('SELECT resource_url, name, vendor, status FROM trb_system WHERE id = $1', [d.directoryId]);
    t.same(rows[0], { resource_url: `${app.config.baseUrl}${baseOf(d)}`, name: d.title, vendor: 'Tributary sandbox', status: 'connection_working' });
    const conf = (await app.inject({ method: 'GET', url: `${baseOf(d)}/.well-known/smart-configuration` })).json();
    t.same(conf.token_endpoint_auth_methods_supported, [d.auth], 'the one client authentication it takes');
    t.ok(conf.code_challenge_methods_supported.includes('S256'));
    const cs = (await app.inject({ method: 'GET', url: `${baseOf(d)}/metadata` })).json();
    t.equal(cs.implementation.url, `${app.config.baseUrl}${baseOf(d)}`);
    t.ok(
      cs.rest[0].security.extension[0].extension.some((e: { url: string }) => e.url === 'authorize'),
      'oauth-uris in the CapabilityStatement',
    );
    const patient = cs.rest[0].resource.find((r: { type: string }) => r.type === 'Patient');
    t.equal(
      !!patient.operation?.some((o: { name: string }) => o.name === 'everything'),
      d.everything,
      `Patient/$everything ${d.everything ? 'listed' : 'not listed'}`,
    );
    const { rows: reg } = await app.pg.query('SELECT client_id, auth_method FROM trb_client_registration WHERE system_id = $1', [d.directoryId]);
    t.same(reg[0], { client_id: d.clientId, auth_method: d.auth }, "Tributary's registration at the system");
  }
});

t.test('a patient signs in at North Valley (client_secret_basic) and reads their own records only', async (t) => {
  const [first, second] = people(NV).filter((p) => p.personKey !== 'shared');
  const tokens = await launch(t, NV, first.username, first.password);
  t.equal(tokens.expires_in, 600, 'short-lived access tokens (SANDBOX_ACCESS_TOKEN_SECONDS)');
  t.ok(tokens.refresh_token, 'offline_access: a refresh token');
  const patientId = first.resources[0].id;
  t.equal(tokens.patient, patientId, "the patient context is the person's own Patient");
  const auth = { authorization: `Bearer ${tokens.access_token}` };
  const me = await app.inject({ method: 'GET', url: `${baseOf(NV)}/Patient/${patientId}`, headers: auth });
  t.equal(me.statusCode, 200);
  const steps = await app.inject({ method: 'GET', url: `${baseOf(NV)}/Observation?code=http://loinc.org|${STEPS_LOINC}&_count=5`, headers: auth });
  t.equal(steps.statusCode, 200);
  t.ok(steps.json().entry.length > 0, 'the steps observations');
  t.ok(
    steps.json().link.some((l: { relation: string }) => l.relation === 'next'),
    'paged',
  );
  const own = first.resources.length;
  const all = await app.inject({ method: 'GET', url: `${baseOf(NV)}/Observation?_summary=count`, headers: auth });
  t.equal(all.json().total, first.resources.filter((r) => r.resourceType === 'Observation').length, 'exactly their Observations');
  t.ok(own > 50, `${own} resources in the record`);
  t.equal(
    (await app.inject({ method: 'GET', url: `${baseOf(NV)}/Patient/${second.resources[0].id}`, headers: auth })).statusCode,
    404,
    "another patient's record is not there",
  );
  t.equal(
    (await app.inject({ method: 'GET', url: `/fhir/r4/Patient/${patientId}`, headers: auth })).statusCode,
    401,
    "the system's token does not open Tributary's own API",
  );
  t.equal((await app.inject({ method: 'GET', url: `${baseOf(LS)}/Patient`, headers: auth })).statusCode, 401, "nor another sandbox's");
  t.equal((await app.inject({ method: 'GET', url: `${baseOf(NV)}/Patient/${patientId}` })).statusCode, 401, 'no token: 401');
  // Refresh (rotation) with the same client authentication.
  const secret = (await registrationSecret(NV))!;
  const refreshed = await post(
    '/oauth2/token',
    { grant_type: 'refresh_token', refresh_token: tokens.refresh_token! },
    { authorization: `Basic ${Buffer.from(`${NV.clientId}:${secret}`).toString('base64')}` },
  );
  t.equal(refreshed.statusCode, 200);
  t.not(refreshed.json().refresh_token, tokens.refresh_token, 'the refresh token rotates');
});

t.test('Lakeside (a public client with PKCE); the shared person is a patient at both, under different ids', async (t) => {
  const shared = people(LS).find((p) => p.personKey === 'shared')!;
  const tokens = await launch(t, LS, shared.username, shared.password);
  const auth = { authorization: `Bearer ${tokens.access_token}` };
  const lsPatient = (await app.inject({ method: 'GET', url: `${baseOf(LS)}/Patient/${tokens.patient}`, headers: auth })).json();
  const nvShared = people(NV).find((p) => p.personKey === 'shared')!.resources[0] as { id: string; name: unknown; birthDate: string };
  t.not(lsPatient.id, nvShared.id, 'different ids');
  t.same([lsPatient.name, lsPatient.birthDate], [nvShared.name, nvShared.birthDate], 'the same person');
});

t.test('fault switches: failures, Retry-After, slowness, a malformed resource, tokens expired and revoked', async (t) => {
  const [p] = people(NV).filter((x) => x.personKey !== 'shared');
  const tokens = await launch(t, NV, p.username, p.password);
  const auth = { authorization: `Bearer ${tokens.access_token}` };
  const faults = (method: 'PUT' | 'GET' | 'DELETE', payload?: object, name = NV.name) =>
    app.inject({
      method,
      url: `/admin/sandbox/${name}/faults`,
      headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(payload ? { 'content-type': 'application/json' } : {}) },
      payload: payload && JSON.stringify(payload),
    });
  const read = () => app.inject({ method: 'GET', url: `${baseOf(NV)}/Observation?_count=3`, headers: auth });

  t.equal((await faults('PUT', { fail: { count: 2, status: 503, retryAfter: 1 } })).statusCode, 200);
  const busy = await read();
  t.same([busy.statusCode, busy.headers['retry-after'], busy.json().resourceType], [503, '1', 'OperationOutcome']);
  t.equal((await read()).statusCode, 503);
  t.equal((await read()).statusCode, 200, 'after N failures, it answers again');
  await faults('PUT', { fail: { count: 1, status: 429, retryAfter: 2 } });
  const throttled = await read();
  t.same([throttled.statusCode, throttled.headers['retry-after']], [429, '2']);

  await faults('PUT', { slow: { count: 1, ms: 300 } });
  const t0 = Date.now();
  t.equal((await read()).statusCode, 200);
  t.ok(Date.now() - t0 >= 290, 'answered late');

  await faults('PUT', { malformed: { count: 1 } });
  const broken = (await read()).json();
  t.same(broken.entry[0].resource.status, { broken: true }, 'the first resource is malformed');
  t.match(broken.entry[1].resource.status, /^(final|amended|preliminary)$/, 'the rest is not');
  t.equal(typeof (await read()).json().entry[0].resource.status, 'string', 'once only');
  t.same((await faults('GET')).json(), {}, 'all used up');

  t.equal((await faults('PUT', { fail: { count: 0, status: 503 } })).statusCode, 400);
  t.equal((await faults('PUT', { explode: true })).statusCode, 400);
  t.equal((await faults('PUT', { fail: { count: 1, status: 500 } }, 'nowhere')).statusCode, 404);
  t.equal((await app.inject({ method: 'GET', url: `/admin/sandbox/${NV.name}/faults` })).statusCode, 401, 'the admin key is needed');
  await faults('PUT', { fail: { count: 5, status: 500 } });
  t.equal((await faults('DELETE')).statusCode, 204);
  t.equal((await read()).statusCode, 200, 'switched off');

  const expired = await app.inject({
    method: 'POST',
    url: `/admin/sandbox/${NV.name}/expire-access-tokens`,
    headers: { authorization: `Bearer ${ADMIN_KEY}` },
  });
  t.ok(expired.json().expired >= 1);
  t.equal((await read()).statusCode, 401, 'the access token no longer works');
  const secret = (await registrationSecret(NV))!;
  const basic = { authorization: `Basic ${Buffer.from(`${NV.clientId}:${secret}`).toString('base64')}` };
  const again = await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token! }, basic);
  t.equal(again.statusCode, 200, 'the refresh token still does');
  await app.inject({ method: 'POST', url: `/admin/sandbox/${NV.name}/revoke-refresh-tokens`, headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  const refused = await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: again.json().refresh_token }, basic);
  t.match(refused.json(), { error: 'invalid_grant' }, 'a revoked refresh token is refused');
});

t.test('a restart writes nothing again; the directory and the registrations stay as they were', async (t) => {
  const count = async () => Number((await app.pg.query('SELECT count(*) AS n FROM hfj_res_ver')).rows[0].n);
  const before = await count();
  const again: FastifyInstance = await buildApp(
    testConfig(app.config.databaseUrl!, { sandboxes: true, sandboxSystems: DEFS, fhirAuth: 'required', adminKey: ADMIN_KEY }),
    { logger: false },
  );
  t.teardown(() => again.close());
  await again.ready();
  await again.sandboxesLoaded;
  t.equal(await count(), before, 'no new version of anything');
  const { rows } = await app.pg.query('SELECT count(*) AS n FROM trb_app WHERE client_id = ANY($1::text[])', [DEFS.map((d) => d.clientId)]);
  t.equal(Number(rows[0].n), DEFS.length, 'one app per sandbox');
  t.ok(await registrationSecret(NV), 'the sealed secret still opens with the same key');
});

t.test('the sandboxes and the demo answer this machine only, unless SANDBOXES_PUBLIC and DEMO=on say otherwise', async (t) => {
  const elsewhere = { remoteAddress: '203.0.113.7' };
  const admin = { authorization: `Bearer ${ADMIN_KEY}` };
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: NV.clientId,
    redirect_uri: `${app.config.baseUrl}/connect/callback`,
    state: 's',
    aud: `${app.config.baseUrl}${baseOf(NV)}`,
  });
  const surfaces = [
    { name: 'the FHIR base', method: 'GET' as const, url: `${baseOf(NV)}/metadata`, ok: 200 },
    { name: 'its SMART configuration', method: 'GET' as const, url: `${baseOf(LS)}/.well-known/smart-configuration`, ok: 200 },
    { name: 'its sign-in', method: 'GET' as const, url: `/oauth2/authorize?${q}`, ok: 302 },
    { name: 'its fault switches', method: 'GET' as const, url: `/admin/sandbox/${NV.name}/faults`, headers: admin, ok: 200 },
  ];
  for (const s of surfaces) {
    const far = await app.inject({ method: s.method, url: s.url, headers: s.headers, ...elsewhere });
    t.equal(far.statusCode, 403, `${s.name}: refused from another machine`);
    t.match(far.body, 'SANDBOXES_PUBLIC=true', 'saying how to serve it');
    const near = await app.inject({ method: s.method, url: s.url, headers: s.headers });
    t.equal(near.statusCode, s.ok, `${s.name}: answered from this machine`);
    const proxied = await app.inject({ method: s.method, url: s.url, headers: { ...s.headers, 'x-forwarded-for': '198.51.100.1' } });
    t.equal(proxied.statusCode, 403, `${s.name}: refused when a proxy on this machine forwarded it`);
  }
  t.match(
    (await app.inject({ method: 'GET', url: `${baseOf(NV)}/metadata`, ...elsewhere })).json(),
    { resourceType: 'OperationOutcome', issue: [{ code: 'forbidden' }] },
    'a FHIR base refuses with an OperationOutcome',
  );
  for (const peer of ['::1', '::ffff:127.0.0.1', '127.0.0.2']) {
    t.equal((await app.inject({ method: 'GET', url: `${baseOf(NV)}/metadata`, remoteAddress: peer })).statusCode, 200, `${peer} is this machine`);
  }
  for (const peer of ['::ffff:10.0.0.1', 'fd00::2', '192.168.1.10']) {
    t.equal((await app.inject({ method: 'GET', url: `${baseOf(NV)}/metadata`, remoteAddress: peer })).statusCode, 403, `${peer} is not`);
  }
  t.not((await app.inject({ method: 'GET', url: '/fhir/r4/metadata', ...elsewhere })).statusCode, 403, "the server's own FHIR API answers everyone");

  const demoFar = await app.inject({ method: 'GET', url: '/demo', ...elsewhere });
  t.equal(demoFar.statusCode, 403, 'the demo app: refused from another machine (DEMO=loopback, the default)');
  t.match(demoFar.body, 'DEMO=on');
  t.match(demoFar.headers['content-type'], 'text/html', 'on a page');
  t.equal(
    (
      await app.inject({
        method: 'POST',
        url: '/demo/user',
        ...elsewhere,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'app_user_id=x',
      })
    ).statusCode,
    403,
    'it creates no user for them',
  );
  t.equal((await app.inject({ method: 'GET', url: '/demo' })).statusCode, 200, 'and answers this machine');

  // The same server over real HTTP, reached at this machine's own non-loopback address.
  const external = Object.values(os.networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal);
  if (external) {
    const port = await freePort();
    await app.listen({ port, host: '0.0.0.0' });
    const far = await fetch(`http://${external.address}:${port}${baseOf(NV)}/metadata`);
    t.equal(far.status, 403, `over HTTP from ${external.address}: refused`);
    t.equal((await fetch(`http://127.0.0.1:${port}${baseOf(NV)}/metadata`)).status, 200, 'over HTTP from 127.0.0.1: answered');
    t.equal((await fetch(`http://${external.address}:${port}/demo`)).status, 403, 'the demo too');
  }

  const open = await buildApp(
    testConfig(app.config.databaseUrl!, {
      sandboxes: true,
      sandboxSystems: DEFS,
      fhirAuth: 'required',
      adminKey: ADMIN_KEY,
      sandboxesPublic: true,
      demo: 'on',
    }),
    { logger: false },
  );
  t.teardown(() => open.close());
  await open.ready();
  for (const s of surfaces)
    t.equal(
      (await open.inject({ method: s.method, url: s.url, headers: s.headers, ...elsewhere })).statusCode,
      s.ok,
      `SANDBOXES_PUBLIC=true: ${s.name} answers another machine`,
    );
  t.equal((await open.inject({ method: 'GET', url: '/demo', ...elsewhere })).statusCode, 200, 'DEMO=on: the demo too');

  const off = await buildApp(testConfig(app.config.databaseUrl!, { sandboxes: true, sandboxSystems: DEFS, demo: 'off' }), { logger: false });
  t.teardown(() => off.close());
  await off.ready();
  t.equal((await off.inject({ method: 'GET', url: '/demo' })).statusCode, 404, 'DEMO=off: no demo at all');
});
