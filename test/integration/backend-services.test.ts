/**
 * SMART Backend Services: an app registered with a JWK Set (RS384 and ES384 keys) gets a
 * client_credentials token with a signed client assertion and the system scopes it asks for, v1
 * or v2, which then bound what it may do on the FHIR API; the assertion's rules (type, aud, exp
 * at most five minutes ahead, single-use jti, a registered key named by kid) each refused with
 * invalid_client (401); scopes it may not have refused with invalid_scope; the SMART
 * configuration says all of it.
 * See: https://hl7.org/fhir/smart-app-launch/backend-services.html
 */
import t, { type Test } from 'tap';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import type { LightMyRequestResponse } from 'fastify';
import { buildTestApp } from '../helper.ts';

const app = await buildTestApp(t, { fhirAuth: 'required' });
const TOKEN_URL = `${app.config.baseUrl}/oauth2/token`;
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';

const rs = await generateKeyPair('RS384');
const es = await generateKeyPair('ES384');
const jwks = {
  keys: [
    { ...(await exportJWK(rs.publicKey)), kid: 'rs-1', alg: 'RS384', use: 'sig' },
    { ...(await exportJWK(es.publicKey)), kid: 'es-1', alg: 'ES384', use: 'sig' },
  ],
};
const { app: client, clientSecret } = await app.auth.createApp({ name: 'Population health', tokenAuthMethod: 'private_key_jwt', jwks });
const now = () => Math.floor(Date.now() / 1000);

interface Claims {
  alg?: 'RS384' | 'ES384';
  kid?: string | null;
  key?: CryptoKey;
  iss?: string;
  aud?: string;
  exp?: number;
  jti?: string;
  header?: Record<string, unknown>;
}

/** A client assertion as a backend service signs it; each claim can be made wrong. */
function assertion(c: Claims = {}): Promise<string> {
  const alg = c.alg ?? 'RS384';
  const kid = c.kid === null ? {} : { kid: c.kid ?? (alg === 'RS384' ? 'rs-1' : 'es-1') };
  return new SignJWT({})
    .setProtectedHeader({ alg, typ: 'JWT', ...kid, ...c.header })
    .setIssuer(c.iss ?? client.clientId)
    .setSubject(c.iss ?? client.clientId)
    .setAudience(c.aud ?? TOKEN_URL)
    .setExpirationTime(c.exp ?? now() + 300)
    .setJti(c.jti ?? crypto.randomUUID())
    .sign(c.key ?? (alg === 'RS384' ? rs.privateKey : es.privateKey));
}

const post = (fields: Record<string, string>, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> =>
  app.inject({ method: 'POST', url: '/oauth2/token', headers: { ...FORM, ...headers }, payload: new URLSearchParams(fields).toString() });

/** The token request of Backend Services: client_credentials, the assertion, and the scope when given. */
async function token(scope: string | undefined, signed?: string): Promise<LightMyRequestResponse> {
  return post({
    grant_type: 'client_credentials',
    client_assertion_type: JWT_BEARER,
    client_assertion: signed ?? (await assertion()),
    ...(scope === undefined ? {} : { scope }),
  });
}

async function accessToken(scope: string | undefined, c: Claims = {}): Promise<string> {
  const res = await token(scope, await assertion(c));
  if (res.statusCode !== 200) throw new Error(`no token: ${res.body}`);
  return res.json().access_token;
}

const fhir = (tok: string, method: 'GET' | 'POST', path: string, body?: object) =>
  app.inject({
    method,
    url: `/fhir/r4/${path}`,
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/fhir+json' },
    ...(body ? { payload: JSON.stringify(body) } : {}),
  });

const observation = (patientId: string, category: string) => ({
  resourceType: 'Observation',
  status: 'final',
  category: [{ coding: [{ system: CATEGORY, code: category }] }],
  code: { coding: [{ system: 'http://loinc.org', code: category === 'laboratory' ? '2339-0' : '8302-2' }] },
  subject: { reference: `Patient/${patientId}` },
});

// The app's data, written with the token of no scope asked (system/*.*, as 1upHealth apps get it).
const full = await accessToken(undefined);
const patient = (await fhir(full, 'POST', 'Patient', { resourceType: 'Patient', name: [{ family: 'Shaw' }] })).json();
for (const category of ['laboratory', 'vital-signs']) {
  const created = await fhir(full, 'POST', 'Observation', observation(patient.id, category));
  if (created.statusCode !== 201) throw new Error(`seeding failed: ${created.body}`);
}

t.test('no scope asked: system/*.*, as before', async (t) => {
  const res = await token(undefined);
  t.equal(res.statusCode, 200);
  t.match(res.json(), { token_type: 'Bearer', scope: 'system/*.*', expires_in: Number });
  t.notOk(res.json().refresh_token, 'no refresh token for client_credentials');
  t.equal(res.headers['cache-control'], 'no-store');
  t.equal((await token('')).json().scope, 'system/*.*', 'an empty scope is none asked');
});

t.test('system/*.read (v1, RS384): reads and searches, never writes', async (t) => {
  const res = await token('system/*.read');
  t.equal(res.statusCode, 200, res.body);
  t.equal(res.json().scope, 'system/*.read', 'granted as asked');
  const tok = res.json().access_token;
  const found = await fhir(tok, 'GET', 'Patient');
  t.equal(found.statusCode, 200);
  t.equal(found.json().total, 1, "the app's Patient");
  t.equal((await fhir(tok, 'GET', `Patient/${patient.id}`)).statusCode, 200);
  t.equal((await fhir(tok, 'GET', 'Observation')).json().total, 2);
  const create = await fhir(tok, 'POST', 'Patient', { resourceType: 'Patient', name: [{ family: 'Nope' }] });
  t.equal(create.statusCode, 403, 'a read scope creates nothing');
  t.equal(create.json().resourceType, 'OperationOutcome');
  t.equal((await fhir(full, 'GET', 'Patient')).json().total, 1, 'nothing was created');
  const exported = await app.inject({
    method: 'GET',
    url: '/fhir/r4/$export',
    headers: { authorization: `Bearer ${tok}`, prefer: 'respond-async', accept: 'application/fhir+json' },
  });
  t.equal(exported.statusCode, 202, 'a bulk export starts with it');
  const introspected = await app.auth.accessFor(tok);
  t.equal(introspected?.scope, 'system/*.read', 'stored with the scope granted');
  t.equal(introspected?.userId, null, 'for no user: the app');
});

t.test('system/Observation.rs (v2, ES384): Observation only', async (t) => {
  const res = await token('system/Observation.rs', await assertion({ alg: 'ES384' }));
  t.equal(res.statusCode, 200, res.body);
  t.equal(res.json().scope, 'system/Observation.rs');
  const tok = res.json().access_token;
  t.equal((await fhir(tok, 'GET', 'Observation')).json().total, 2);
  t.equal((await fhir(tok, 'GET', 'Patient')).statusCode, 403, 'Patient is not granted');
  t.equal((await fhir(tok, 'GET', `Patient/${patient.id}`)).statusCode, 403);
  t.equal((await fhir(tok, 'POST', 'Observation', observation(patient.id, 'laboratory'))).statusCode, 403, 'rs: no create');
});

t.test('a v2 filter and several scopes are granted as asked, and applied', async (t) => {
  const labs = `system/Observation.rs?category=${CATEGORY}|laboratory`;
  const res = await token(`${labs} system/Patient.read`);
  t.equal(res.statusCode, 200, res.body);
  t.equal(res.json().scope, `${labs} system/Patient.read`);
  const tok = res.json().access_token;
  const found = (await fhir(tok, 'GET', 'Observation')).json();
  t.equal(found.total, 1, 'the filter narrows the search');
  t.equal(found.entry[0].resource.category[0].coding[0].code, 'laboratory');
  t.equal((await fhir(tok, 'GET', 'Patient')).statusCode, 200);
  t.equal((await token('system/*.rs system/*.rs')).json().scope, 'system/*.rs', 'a scope asked twice is granted once');
  const write = await token('system/Observation.cud');
  t.equal(write.json().scope, 'system/Observation.cud');
  const written = await fhir(write.json().access_token, 'POST', 'Observation', observation(patient.id, 'vital-signs'));
  t.equal(written.statusCode, 201, 'a write scope writes');
});

t.test('scopes that are not system resource scopes: invalid_scope', async (t) => {
  for (const scope of [
    'patient/*.read',
    'user/Observation.rs',
    'openid',
    'launch/patient',
    'offline_access',
    'system/NotAType.read',
    'system/Observation.',
    'system/Observation.sr',
    'system/*.read openid',
    'x'.repeat(5000),
  ]) {
    const res = await token(scope);
    t.equal(res.statusCode, 400, scope.slice(0, 40));
    t.equal(res.json().error, 'invalid_scope', scope.slice(0, 40));
    t.match(res.json().error_description, /\.$/, 'a sentence');
  }
  t.match((await token('patient/*.read')).json().error_description, /system scopes .* ask without patient\/\*\.read\./);
});

t.test('an app registered for some system scopes gets those it asks for, or invalid_scope', async (t) => {
  const { app: narrow } = await app.auth.createApp({
    name: 'Labs only',
    tokenAuthMethod: 'private_key_jwt',
    jwks,
    scopes: ['system/Observation.rs', 'patient/*.read'],
  });
  const ask = async (scope: string | undefined) => token(scope, await assertion({ iss: narrow.clientId }));
  t.equal((await ask(undefined)).json().scope, 'system/Observation.rs', 'none asked: what it registered');
  t.equal((await ask('system/Observation.rs')).json().scope, 'system/Observation.rs');
  t.equal((await ask('system/Observation.s')).json().scope, 'system/Observation.s', 'narrower');
  t.equal((await ask(`system/Observation.rs?category=${CATEGORY}|laboratory`)).statusCode, 200, 'filtered');
  t.equal((await ask('system/Observation.rs system/Patient.rs')).json().scope, 'system/Observation.rs', 'what it may not have is left out');
  const refused = await ask('system/*.rs');
  t.equal(refused.statusCode, 400);
  t.match(refused.json(), { error: 'invalid_scope', error_description: /registered for system\/Observation\.rs/ });
  t.equal((await ask('system/Observation.cruds')).json().error, 'invalid_scope');
});

t.test('the assertion: each refusal is invalid_client (401), saying why', async (t) => {
  const refused = async (t: Test, what: string, res: LightMyRequestResponse | Promise<LightMyRequestResponse>, why: RegExp) => {
    const r = await res;
    t.equal(r.statusCode, 401, `${what}: ${r.body}`);
    t.equal(r.json().error, 'invalid_client', what);
    t.match(r.json().error_description, why, what);
  };
  const reused = await assertion();
  t.equal((await token('system/*.read', reused)).statusCode, 200);
  await refused(t, 'a reused jti', token('system/*.read', reused), /used before/);
  t.equal((await token('system/*.read', await assertion({ jti: 'fixed-jti' }))).statusCode, 200);
  await refused(t, 'a used jti in a new assertion', token('system/*.read', await assertion({ jti: 'fixed-jti' })), /used before/);
  await refused(t, 'expired', token('system/*.read', await assertion({ exp: now() - 120 })), /expired/);
  await refused(t, 'exp an hour ahead', token('system/*.read', await assertion({ exp: now() + 3600 })), /more than 5 minutes ahead/);
  await refused(t, 'exp six minutes ahead', token('system/*.read', await assertion({ exp: now() + 360 })), /at most 300 seconds/);
  await refused(
    t,
    'a wrong aud',
    token('system/*.read', await assertion({ aud: 'https://elsewhere.example/token' })),
    /aud must be .*\/oauth2\/token/,
  );
  await refused(t, 'the FHIR base as aud', token('system/*.read', await assertion({ aud: `${app.config.baseUrl}/fhir/r4` })), /aud/);
  const stranger = await generateKeyPair('RS384');
  await refused(t, 'a key not registered, with a registered kid', token('system/*.read', await assertion({ key: stranger.privateKey })), /signature/);
  const strangerEc = await generateKeyPair('ES384');
  await refused(t, 'an EC key not registered', token('system/*.read', await assertion({ alg: 'ES384', key: strangerEc.privateKey })), /signature/);
  await refused(t, 'an unknown kid', token('system/*.read', await assertion({ kid: 'other' })), /kid/);
  await refused(t, 'the kid of a key of another type', token('system/*.read', await assertion({ alg: 'ES384', kid: 'rs-1' })), /kid/);
  await refused(t, 'no kid', token('system/*.read', await assertion({ kid: null })), /needs kid/);
  await refused(t, 'a jku', token('system/*.read', await assertion({ header: { jku: 'https://evil.example/jwks' } })), /jku/);
  await refused(t, 'an unknown client_id', token('system/*.read', await assertion({ iss: 'nobody' })), /No app has the client_id/);
  await refused(t, 'not a JWT', token('system/*.read', 'not.a.jwt'), /not a signed JWT/);
  await refused(
    t,
    'unsigned (alg none)',
    token(
      'system/*.read',
      `${b64({ alg: 'none', kid: 'rs-1' })}.${b64({ iss: client.clientId, sub: client.clientId, aud: TOKEN_URL, exp: now() + 60, jti: 'x' })}.`,
    ),
    /signed with none; sign it with RS384, ES384, RS256 or ES256/,
  );
  await refused(
    t,
    'HS256 with a made-up secret',
    token(
      'system/*.read',
      await new SignJWT({})
        .setProtectedHeader({ alg: 'HS256', kid: 'rs-1' })
        .setIssuer(client.clientId)
        .setSubject(client.clientId)
        .setAudience(TOKEN_URL)
        .setExpirationTime(now() + 60)
        .setJti(crypto.randomUUID())
        .sign(new TextEncoder().encode('a'.repeat(32))),
    ),
    /signed with HS256; sign it with RS384, ES384, RS256 or ES256\./,
  );
  await refused(
    t,
    'a wrong client_assertion_type',
    post({ grant_type: 'client_credentials', client_assertion_type: 'urn:other', client_assertion: await assertion() }),
    /client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer/,
  );
  await refused(
    t,
    'no client_assertion',
    post({ grant_type: 'client_credentials', client_assertion_type: JWT_BEARER }),
    /client_assertion is required/,
  );
  await refused(
    t,
    "this app's client_id and a made-up secret",
    post({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: 'x'.repeat(43) }),
    /missing or wrong/,
  );
  t.equal(clientSecret, '', 'an app of keys has no secret');
  // An assertion may be good for as long as five minutes.
  t.equal((await token('system/*.read', await assertion({ exp: now() + 300 }))).statusCode, 200, 'exp five minutes ahead is good');
});

t.test('a secret-based app keeps client_credentials (scope honoured too); a public app has none', async (t) => {
  const { app: secretApp, clientSecret: secret } = await app.auth.createApp({ name: '1upHealth style' });
  const creds = { grant_type: 'client_credentials', client_id: secretApp.clientId, client_secret: secret };
  t.equal((await post(creds)).json().scope, 'system/*.*');
  t.equal((await post({ ...creds, scope: 'system/*.rs' })).json().scope, 'system/*.rs');
  t.equal((await post({ ...creds, scope: 'user/*.*' })).json().error, 'invalid_scope');
  const { app: publicApp } = await app.auth.createApp({ name: 'public', public: true, redirectUris: ['https://app.example/cb'] });
  const res = await post({ grant_type: 'client_credentials', client_id: publicApp.clientId, scope: 'system/*.read' });
  t.equal(res.statusCode, 400);
  t.equal(res.json().error, 'unauthorized_client');
  // An app of keys assertion against an app of a secret: no JWK Set to check it with.
  const res2 = await token('system/*.read', await assertion({ iss: secretApp.clientId }));
  t.equal(res2.statusCode, 401);
  t.match(res2.json().error_description, /no registered JWK Set/);
});

t.test('the SMART configuration says what Backend Services clients look for', async (t) => {
  const conf = (await app.inject({ method: 'GET', url: '/fhir/r4/.well-known/smart-configuration' })).json();
  t.equal(conf.token_endpoint, TOKEN_URL);
  t.ok(conf.grant_types_supported.includes('client_credentials'));
  t.ok(conf.token_endpoint_auth_methods_supported.includes('private_key_jwt'));
  for (const alg of ['RS384', 'ES384']) t.ok(conf.token_endpoint_auth_signing_alg_values_supported.includes(alg), alg);
  for (const scope of ['system/*.read', 'system/*.rs']) t.ok(conf.scopes_supported.includes(scope), scope);
  for (const c of ['client-confidential-asymmetric', 'permission-v1', 'permission-v2']) t.ok(conf.capabilities.includes(c), c);
});

function b64(o: object): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}
