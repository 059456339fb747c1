/**
 * Registering a SMART Backend Services client with the documented commands only: the admin API
 * (POST /admin/apps with `jwks`, PUT /admin/apps/:clientId/jwks) and the CLI (`app create --jwks`,
 * `app set-jwks`). A registered set, then an assertion signed with `jose`, gets a
 * client_credentials token; rotation: the old key stops working at once and the new one works;
 * every malformed or unsafe set (private members, no kid, duplicate kids, other key types, small
 * RSA keys...) is a 400 that says what to do, and changes nothing.
 * See: https://hl7.org/fhir/smart-app-launch/backend-services.html#registering-a-smart-backend-service-communicating-public-keys
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../src/app.ts';
import { buildTestApp, testConfig, testDatabase } from '../helper.ts';

const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '..', '..');
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ADMIN_KEY = 'a'.repeat(40);
const ADMIN = { authorization: `Bearer ${ADMIN_KEY}` };

const app = await buildTestApp(t, { fhirAuth: 'required', adminKey: ADMIN_KEY });

interface Pair {
  kid: string;
  alg: 'RS384' | 'ES384';
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function pair(kid: string, alg: 'RS384' | 'ES384' = 'RS384'): Promise<Pair> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}
const setOf = (...pairs: Pair[]) => ({ keys: pairs.map((p) => p.publicJwk) });

/** A client assertion as a backend service signs it (SMART: iss = sub = client_id, aud the token URL, exp ≤ 5 min, a new jti, kid). */
function assertion(server: FastifyInstance, clientId: string, key: Pair, kid = key.kid): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: key.alg, kid, typ: 'JWT' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(`${server.config.baseUrl}/oauth2/token`)
    .setExpirationTime(Math.floor(Date.now() / 1000) + 240)
    .setJti(crypto.randomUUID())
    .sign(key.privateKey);
}

async function tokenWith(server: FastifyInstance, clientId: string, key: Pair, scope?: string, kid?: string): Promise<LightMyRequestResponse> {
  return server.inject({
    method: 'POST',
    url: '/oauth2/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: await assertion(server, clientId, key, kid),
      ...(scope ? { scope } : {}),
    }).toString(),
  });
}

const admin = (method: 'GET' | 'POST' | 'PUT', url: string, body?: unknown) =>
  app.inject({
    method,
    url: `/admin${url}`,
    headers: { ...ADMIN, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });

const rs1 = await pair('rs-1');
const es1 = await pair('es-1', 'ES384');
const rs2 = await pair('rs-2');

t.test('admin API: an app made with a JWK Set gets a token with a real assertion, and reads back its method and keys', async (t) => {
  const made = await admin('POST', '/apps', { name: 'Population health', jwks: setOf(rs1, es1) });
  t.equal(made.statusCode, 201, made.body);
  const body = made.json();
  t.equal(body.token_endpoint_auth_method, 'private_key_jwt', 'a JWK Set and no method: private_key_jwt');
  t.notOk('client_secret' in body, 'an app of keys has no secret to show');
  t.same(
    body.jwks.keys.map((k: JWK) => k.kid),
    ['rs-1', 'es-1'],
  );

  const res = await tokenWith(app, body.client_id, rs1, 'system/*.read');
  t.equal(res.statusCode, 200, res.body);
  t.match(res.json(), { token_type: 'Bearer', scope: 'system/*.read', expires_in: Number });
  const es = await tokenWith(app, body.client_id, es1);
  t.equal(es.json().scope, 'system/*.*', 'ES384 works too; no scope asked: system/*.*');
  const search = await app.inject({ method: 'GET', url: '/fhir/r4/Patient', headers: { authorization: `Bearer ${res.json().access_token}` } });
  t.equal(search.statusCode, 200, 'the token reads FHIR');
  const exported = await app.inject({
    method: 'GET',
    url: '/fhir/r4/$export',
    headers: { authorization: `Bearer ${res.json().access_token}`, prefer: 'respond-async', accept: 'application/fhir+json' },
  });
  t.equal(exported.statusCode, 202, 'and starts a Bulk Data export');

  const shown = await admin('GET', `/apps/${body.client_id}`);
  t.equal(shown.statusCode, 200);
  t.match(shown.json(), {
    client_id: body.client_id,
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [{ kid: 'rs-1' }, { kid: 'es-1' }] },
  });
  const listed = (await admin('GET', '/apps')).json().find((a: { client_id: string }) => a.client_id === body.client_id);
  t.equal(listed.token_endpoint_auth_method, 'private_key_jwt', 'the list says it too');
  t.equal((await admin('GET', '/apps/nobody')).statusCode, 404);

  const explicit = await admin('POST', '/apps', { name: 'Explicit', token_endpoint_auth_method: 'private_key_jwt', jwks: setOf(rs2) });
  t.equal(explicit.statusCode, 201, 'private_key_jwt named, with its keys');
  t.equal((await tokenWith(app, explicit.json().client_id, rs2)).statusCode, 200);

  const secretApp = (await admin('POST', '/apps', { name: 'Secret' })).json();
  t.equal(secretApp.token_endpoint_auth_method, null, 'a secret either way: null');
  t.notOk('jwks' in secretApp);
  const publicApp = (await admin('POST', '/apps', { name: 'Public', public: true, redirect_uris: ['https://p.example/cb'] })).json();
  t.equal(publicApp.token_endpoint_auth_method, 'none');

  const refused = await admin('POST', `/apps/${body.client_id}/rotate-secret`);
  t.equal(refused.statusCode, 400, 'an app of keys has no secret to rotate');
  t.match(refused.json().error, /private_key_jwt, not a secret; replace its keys with PUT/);
});

t.test('admin API: token_endpoint_auth_method binds a secret app to one way of sending its secret', async (t) => {
  const made = await admin('POST', '/apps', { name: 'Post only', token_endpoint_auth_method: 'client_secret_post' });
  t.equal(made.statusCode, 201);
  const { client_id, client_secret, token_endpoint_auth_method } = made.json();
  t.equal(token_endpoint_auth_method, 'client_secret_post');
  t.match(client_secret, /^[0-9a-f]{64}$/);
  const post = (headers: Record<string, string>, fields: Record<string, string>) =>
    app.inject({
      method: 'POST',
      url: '/oauth2/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      payload: new URLSearchParams({ grant_type: 'client_credentials', ...fields }).toString(),
    });
  t.equal((await post({}, { client_id, client_secret })).statusCode, 200, 'as form fields');
  const basic = { authorization: `Basic ${Buffer.from(`${client_id}:${client_secret}`).toString('base64')}` };
  t.equal((await post(basic, {})).statusCode, 401, 'not with HTTP Basic');
  t.equal((await admin('GET', `/apps/${client_id}`)).json().token_endpoint_auth_method, 'client_secret_post');
});

t.test('rotation: PUT /admin/apps/:clientId/jwks replaces the set at once; the old key stops working, the new one works', async (t) => {
  const { client_id } = (await admin('POST', '/apps', { name: 'Rotating', jwks: setOf(rs1) })).json();
  t.equal((await tokenWith(app, client_id, rs1)).statusCode, 200, 'the first key works');
  // Both for a while (the client moves its signing to the new key)...
  const both = await admin('PUT', `/apps/${client_id}/jwks`, setOf(rs1, rs2));
  t.equal(both.statusCode, 200, both.body);
  t.same(
    both.json().jwks.keys.map((k: JWK) => k.kid),
    ['rs-1', 'rs-2'],
  );
  t.equal((await tokenWith(app, client_id, rs1)).statusCode, 200, 'old key, during the overlap');
  t.equal((await tokenWith(app, client_id, rs2)).statusCode, 200, 'new key, during the overlap');
  // ...then the new one alone.
  const replaced = await admin('PUT', `/apps/${client_id}/jwks`, setOf(rs2));
  t.equal(replaced.statusCode, 200);
  t.equal(replaced.json().token_endpoint_auth_method, 'private_key_jwt');
  const old = await tokenWith(app, client_id, rs1);
  t.equal(old.statusCode, 401, 'the old key is refused at once');
  t.equal(old.json().error, 'invalid_client');
  t.match(old.json().error_description, /kid/);
  const oldUnderNewKid = await tokenWith(app, client_id, rs1, undefined, 'rs-2');
  t.equal(oldUnderNewKid.statusCode, 401, 'the old key under the new kid');
  t.match(oldUnderNewKid.json().error_description, /signature/);
  t.equal((await tokenWith(app, client_id, rs2, 'system/Observation.rs')).json().scope, 'system/Observation.rs', 'the new key works');

  // A set refused leaves the registered one as it was.
  t.equal((await admin('PUT', `/apps/${client_id}/jwks`, { keys: [] })).statusCode, 400);
  t.equal((await tokenWith(app, client_id, rs2)).statusCode, 200, 'still the new key');
  t.equal((await admin('PUT', '/apps/nobody/jwks', setOf(rs2))).statusCode, 404, 'no such app');
  const publicApp = (await admin('POST', '/apps', { name: 'Public', public: true })).json();
  const onPublic = await admin('PUT', `/apps/${publicApp.client_id}/jwks`, setOf(rs2));
  t.equal(onPublic.statusCode, 400);
  t.match(onPublic.json().error, /public app has no client authentication/);
  t.equal(
    (await app.inject({ method: 'PUT', url: `/admin/apps/${client_id}/jwks`, payload: setOf(rs1) })).statusCode,
    401,
    'the admin key is needed',
  );
});

t.test('a secret-based app given a JWK Set authenticates with its keys from then on; its secret stops working', async (t) => {
  const made = (await admin('POST', '/apps', { name: 'Moving to keys' })).json();
  const creds = { grant_type: 'client_credentials', client_id: made.client_id, client_secret: made.client_secret };
  const bySecret = () =>
    app.inject({
      method: 'POST',
      url: '/oauth2/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams(creds).toString(),
    });
  t.equal((await bySecret()).statusCode, 200);
  const put = await admin('PUT', `/apps/${made.client_id}/jwks`, setOf(es1));
  t.equal(put.json().token_endpoint_auth_method, 'private_key_jwt');
  t.equal((await bySecret()).statusCode, 401, 'the secret no longer works');
  t.equal((await tokenWith(app, made.client_id, es1)).statusCode, 200, 'the key does');
});

t.test('refusals: each a 400 saying what to do, on create and on replace; nothing is made or changed', async (t) => {
  const rsa = await generateKeyPair('RS384', { extractable: true });
  const privateJwk = { ...(await exportJWK(rsa.privateKey)), kid: 'leaked' };
  // Keys jose would not make (too small) or that this server does not take, made by node:crypto.
  const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
  const ed = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' });
  const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey.export({ format: 'jwk' });
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
  const noKid = { ...rs1.publicJwk, kid: undefined };
  const cases: [string, unknown, RegExp][] = [
    ['a private RSA key', { keys: [privateJwk] }, /Key leaked holds private key members \(d, p, q, dp, dq, qi\): register the public key only/],
    [
      'a private key beside a public one',
      { keys: [rs1.publicJwk, { ...es1.publicJwk, kid: 'es-x', d: 'AAAA' }] },
      /Key es-x holds private key members \(d\)/,
    ],
    ['a symmetric key', { keys: [{ kty: 'oct', kid: 'hmac', k: 'c2VjcmV0' }] }, /Key hmac holds private key members \(k\)/],
    ['no kid', { keys: [noKid] }, /Key 1 has no kid; give each key a kid/],
    ['duplicate kids', { keys: [rs1.publicJwk, { ...rs2.publicJwk, kid: 'rs-1' }] }, /Two keys have the kid rs-1; give each key a kid of its own\./],
    ['an OKP key', { keys: [{ ...ed, kid: 'ed' }] }, /Key ed has kty OKP; register RSA or EC keys/],
    [
      'an RSA key of 1024 bits',
      { keys: [{ ...small, kid: 'small' }] },
      /Key small is a 1024-bit RSA key; register an RSA key of 2048 bits or more\./,
    ],
    ['a P-521 key', { keys: [{ ...p521, kid: 'big' }] }, /curve P-521; register a P-384 \(ES384\) or P-256 \(ES256\) key\./],
    [
      'a P-256 key for ES384',
      { keys: [{ ...p256, kid: 'p256', alg: 'ES384' }] },
      /Key p256 is a P-256 key with alg ES384; a P-256 key signs with ES256\./,
    ],
    ['a malformed modulus', { keys: [{ kty: 'RSA', kid: 'bad', n: '!!', e: 'AQAB' }] }, /Key bad is not a valid RSA public key/],
    ['an encryption key', { keys: [{ ...rs1.publicJwk, use: 'enc' }] }, /use enc; a client assertion key has use sig/],
    ['an RSA key for ES384', { keys: [{ ...rs1.publicJwk, alg: 'ES384' }] }, /alg ES384; an RSA key here signs with RS384 or RS256/],
    ['a single JWK, not a set', rs1.publicJwk, /single JWK, not a JWK Set: wrap it as \{"keys"/],
    ['no keys', { keys: [] }, /holds no key/],
    ['keys not a list', { keys: 'rs-1' }, /needs "keys", a list/],
    ['not an object', 'a string', /must be a JSON object/],
    ['too many keys', { keys: Array.from({ length: 21 }, (_, i) => ({ ...rs1.publicJwk, kid: `k${i}` })) }, /holds 21 keys; register at most 20\./],
  ];
  const before = (await admin('GET', '/apps')).json().length;
  const { client_id } = (await admin('POST', '/apps', { name: 'Keeps its keys', jwks: setOf(rs1) })).json();
  for (const [what, jwks, why] of cases) {
    const created = await admin('POST', '/apps', { name: what, jwks });
    t.equal(created.statusCode, 400, `create, ${what}: ${created.body}`);
    t.match(created.json(), { code: 'invalid_parameter', error: why }, `create, ${what}`);
    t.match(created.json().error, /[.]$/, 'a sentence');
    t.notMatch(created.body, /"d":|AAAA/, 'no private member echoed');
    const replaced = await admin('PUT', `/apps/${client_id}/jwks`, jwks);
    t.equal(replaced.statusCode, 400, `replace, ${what}`);
    t.match(replaced.json().error, why, `replace, ${what}`);
  }
  const methods: [string, object, RegExp][] = [
    [
      'a JWK Set with client_secret_basic',
      { jwks: setOf(rs1), token_endpoint_auth_method: 'client_secret_basic' },
      /A JWK Set is for private_key_jwt: set token_endpoint_auth_method to private_key_jwt, or leave out jwks\./,
    ],
    [
      'private_key_jwt without keys',
      { token_endpoint_auth_method: 'private_key_jwt' },
      /private_key_jwt needs the public keys of the app: give jwks \(a JWK Set\)\./,
    ],
    [
      'an unknown method',
      { token_endpoint_auth_method: 'tls_client_auth' },
      /token_endpoint_auth_method must be client_secret_basic, client_secret_post or private_key_jwt\./,
    ],
    [
      'a public app with keys',
      { public: true, jwks: setOf(rs1) },
      /A public app has no client authentication: leave out token_endpoint_auth_method and jwks/,
    ],
  ];
  for (const [what, fields, why] of methods) {
    const res = await admin('POST', '/apps', { name: what, ...fields });
    t.equal(res.statusCode, 400, what);
    t.match(res.json().error, why, what);
  }
  t.equal((await admin('GET', '/apps')).json().length, before + 1, 'no app was made by a refused request');
  t.equal((await tokenWith(app, client_id, rs1)).statusCode, 200, 'the registered set is unchanged');
});

t.test('CLI: app create --jwks, app set-jwks; the tokens follow; errors in one sentence', async (t) => {
  const url = await testDatabase(t);
  const server = await buildApp(testConfig(url, { fhirAuth: 'required' }), { logger: false });
  t.teardown(() => server.close());
  await server.ready();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-jwks-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, content: unknown) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
    return p;
  };
  const cli = (...args: string[]) =>
    run(path.join(REPO, 'node_modules', '.bin', 'node'), [path.join(REPO, 'bin', 'tributary.ts'), ...args], {
      env: { ...process.env, DATABASE_URL: url, BASE_URL: server.config.baseUrl },
      cwd: REPO,
    });
  /** The exit code and standard error of a command that fails. */
  const failing = async (...args: string[]) => {
    try {
      await cli(...args);
      return { code: 0, stderr: '' };
    } catch (err) {
      const e = err as { code: number; stderr: string };
      return { code: e.code, stderr: e.stderr };
    }
  };

  const first = file('public-jwks.json', setOf(rs1));
  const text = (await cli('app', 'create', '--name', 'Backend', '--jwks', first)).stdout;
  t.match(text, /App "Backend" created\.\n {2}client_id: [0-9a-f]{32}\n {2}token_endpoint_auth_method: private_key_jwt \(keys rs-1\)/);
  t.match(text, /It has no secret: .*aud http:\/\/tributary\.test\/oauth2\/token\./, 'it says where the assertion goes');
  const clientId = /client_id: ([0-9a-f]{32})/.exec(text)![1];
  t.equal((await tokenWith(server, clientId, rs1, 'system/*.rs')).json().scope, 'system/*.rs', 'the CLI-registered key gets a token');

  const json = JSON.parse((await cli('app', 'create', '--name', 'Backend 2', '--jwks', first, '--json')).stdout);
  t.equal(json.token_endpoint_auth_method, 'private_key_jwt');
  t.notOk('client_secret' in json);
  t.same(json.jwks, setOf(rs1));

  const second = file('rotated-jwks.json', setOf(rs2));
  const rotated = (await cli('app', 'set-jwks', clientId, second)).stdout;
  t.match(rotated, new RegExp(`JWK Set of ${clientId} replaced: keys rs-2\\. A client assertion signed by any other key is refused from now on\\.`));
  t.equal((await tokenWith(server, clientId, rs1)).statusCode, 401, 'the old key stops working at once');
  t.equal((await tokenWith(server, clientId, rs2)).statusCode, 200, 'the new key works');
  const listed = JSON.parse((await cli('app', 'list', '--json')).stdout).find((a: { client_id: string }) => a.client_id === clientId);
  t.same(listed.jwks, setOf(rs2), 'app list shows the new set');

  const secretApp = JSON.parse((await cli('app', 'create', '--name', 'Was secret', '--json')).stdout);
  const moved = (await cli('app', 'set-jwks', secretApp.client_id, first)).stdout;
  t.match(moved, /private_key_jwt from now on: its client_secret no longer works/);
  t.equal((await tokenWith(server, secretApp.client_id, rs1)).statusCode, 200);
  const basic = JSON.parse((await cli('app', 'create', '--name', 'Basic', '--auth', 'client_secret_basic', '--json')).stdout);
  t.equal(basic.token_endpoint_auth_method, 'client_secret_basic');

  const rsa = await generateKeyPair('RS384', { extractable: true });
  const privateJwk = await exportJWK(rsa.privateKey);
  const leaked = file('private.json', { keys: [{ ...privateJwk, kid: 'oops' }] });
  const errors: [string[], number, RegExp][] = [
    [['app', 'create', '--name', 'X', '--jwks', leaked], 2, /private\.json: Key oops holds private key members .*: register the public key only/],
    [['app', 'set-jwks', clientId, leaked], 2, /Key oops holds private key members/],
    [
      ['app', 'create', '--name', 'X', '--jwks', path.join(dir, 'missing.json')],
      2,
      /missing\.json: no such file; give the path of the app's public JWK Set/,
    ],
    [['app', 'create', '--name', 'X', '--jwks', file('broken.json', '{"keys": [')], 2, /broken\.json is not valid JSON; give a JWK Set file such as/],
    [['app', 'create', '--name', 'X', '--jwks', file('dup.json', { keys: [rs1.publicJwk, rs1.publicJwk] })], 2, /Two keys have the kid rs-1/],
    [
      ['app', 'create', '--name', 'X', '--jwks', first, '--auth', 'client_secret_post'],
      2,
      /A JWK Set is for private_key_jwt: set --auth to private_key_jwt, or leave out --jwks FILE\./,
    ],
    [['app', 'create', '--name', 'X', '--auth', 'private_key_jwt'], 2, /private_key_jwt needs the public keys of the app: give --jwks FILE/],
    [['app', 'create', '--name', 'X', '--public', '--jwks', first], 2, /A public app has no client authentication/],
    [['app', 'set-jwks', clientId], 2, /app set-jwks needs the CLIENT_ID and the JWK Set file/],
    [['app', 'set-jwks', 'nobody', second], 1, /No app has client_id nobody; tributary app list shows the apps\./],
    [['app', 'rotate-secret', clientId], 1, /authenticates with private_key_jwt, not a secret; replace its keys with tributary app set-jwks/],
  ];
  for (const [args, code, why] of errors) {
    const r = await failing(...args);
    t.equal(r.code, code, args.join(' '));
    t.match(r.stderr, why, args.join(' '));
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    t.notOk(r.stderr.includes(String(privateJwk.d)), 'the private key is never echoed');
  }
  t.equal((await tokenWith(server, clientId, rs2)).statusCode, 200, 'the refused commands changed nothing');
});
