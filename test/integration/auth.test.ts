/**
 * Apps, users and tokens over HTTP, the way 1upHealth's sample app calls them: credentials in the
 * query string, a user, a code, a token, a FHIR query with it. Then the token lifecycle (single-use
 * codes, refresh rotation and reuse, revocation, introspection), the rate limit and the CLI.
 */
import { execFile, spawn } from 'node:child_process';
import pg from 'pg';
import { promisify } from 'node:util';
import path from 'node:path';
import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.ts';
import { buildTestApp, testConfig, testDatabase } from '../helper.ts';
import { AuthStore } from '../../src/auth/store.ts';

const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '..', '..');

async function setup(tt: Parameters<typeof buildTestApp>[0], limit = 300) {
  const app = await buildTestApp(tt, { fhirAuth: 'required', userApiRateLimit: limit });
  const { app: client, clientSecret } = await app.auth.createApp({ name: 'Sample', redirectUris: ['http://localhost:3000/callback'] });
  const creds = `client_id=${client.clientId}&client_secret=${clientSecret}`;
  return { app, client, clientSecret, creds };
}

async function tokenFor(app: FastifyInstance, creds: string, code: string) {
  return app.inject({ method: 'POST', url: `/oauth2/token?${creds}&code=${code}&grant_type=authorization_code` });
}

t.test("1upHealth's sample-app flow: user, code, token, FHIR query; an existing user; a code for them", async (t) => {
  const { app, creds } = await setup(t);
  const created = await app.inject({ method: 'POST', url: `/user-management/v1/user?app_user_id=alice&${creds}` });
  t.equal(created.statusCode, 200);
  const user = created.json();
  t.equal(user.success, true);
  t.equal(user.app_user_id, 'alice');
  t.equal(user.active, true);
  t.type(user.oneup_user_id, 'number');
  t.match(user.code, /^[0-9a-f]{64}$/);

  const tok = await tokenFor(app, creds, user.code);
  t.equal(tok.statusCode, 200, tok.body);
  const body = tok.json();
  t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type']);
  t.equal(body.token_type, 'Bearer');
  t.equal(body.expires_in, 7200);
  t.equal(tok.headers['cache-control'], 'no-store');

  const bearer = { authorization: `Bearer ${body.access_token}` };
  const made = await app.inject({
    method: 'POST',
    url: '/fhir/r4/Patient',
    headers: { ...bearer, 'content-type': 'application/fhir+json' },
    payload: { resourceType: 'Patient', name: [{ family: 'Liddell' }] },
  });
  t.equal(made.statusCode, 201);
  const search = await app.inject({ method: 'GET', url: '/fhir/r4/Patient', headers: bearer });
  t.equal(search.statusCode, 200);
  t.equal(search.json().total, 1);
  // The same on /r4, 1upHealth's other base.
  t.equal((await app.inject({ method: 'GET', url: '/r4/Patient', headers: bearer })).json().total, 1);

  const again = await app.inject({ method: 'POST', url: `/user-management/v1/user?app_user_id=alice&${creds}` });
  t.same(again.json(), { error: 'this user already exists', code: 'user_exists' });

  const code2 = await app.inject({ method: 'POST', url: `/user-management/v1/user/auth-code?app_user_id=alice&${creds}` });
  t.equal(code2.statusCode, 200);
  t.equal(code2.json().oneup_user_id, user.oneup_user_id);
  const tok2 = await tokenFor(app, creds, code2.json().code);
  t.equal(tok2.statusCode, 200);
  // The new token reaches the same user's data.
  t.equal(
    (await app.inject({ method: 'GET', url: '/fhir/r4/Patient', headers: { authorization: `Bearer ${tok2.json().access_token}` } })).json().total,
    1,
  );

  const listed = await app.inject({ method: 'GET', url: `/user-management/v1/user?${creds}` });
  t.same(listed.json().entry, [{ oneup_user_id: user.oneup_user_id, app_user_id: 'alice', active: true }]);
  const renamed = await app.inject({
    method: 'PUT',
    url: `/user-management/v1/user?oneup_user_id=${user.oneup_user_id}&app_user_id=alice2&${creds}`,
  });
  t.equal(renamed.json().app_user_id, 'alice2');
  t.equal((await app.inject({ method: 'POST', url: `/user-management/v1/user/auth-code?app_user_id=nobody&${creds}` })).statusCode, 404);
});

t.test('credentials: as headers, form fields or HTTP Basic; wrong ones are refused', async (t) => {
  const { app, client, clientSecret, creds } = await setup(t);
  const viaHeaders = await app.inject({
    method: 'POST',
    url: '/user-management/v1/user?app_user_id=bob',
    headers: { client_id: client.clientId, client_secret: clientSecret },
  });
  t.equal(viaHeaders.json().success, true);
  const form = await app.inject({
    method: 'POST',
    url: '/fhir/oauth2/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=authorization_code&code=${viaHeaders.json().code}&client_id=${client.clientId}&client_secret=${clientSecret}`,
  });
  t.equal(form.statusCode, 200, form.body);
  const basic = await app.inject({
    method: 'POST',
    url: '/oauth2/token',
    headers: {
      authorization: `Basic ${Buffer.from(`${client.clientId}:${clientSecret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    payload: 'grant_type=client_credentials',
  });
  t.equal(basic.statusCode, 200);
  t.notOk(basic.json().refresh_token, 'an app token has no refresh token');

  const wrong = await app.inject({
    method: 'POST',
    url: `/oauth2/token?client_id=${client.clientId}&client_secret=${'0'.repeat(64)}&grant_type=client_credentials`,
  });
  t.equal(wrong.statusCode, 401);
  t.equal(wrong.json().error, 'invalid_client');
  t.equal(
    (await app.inject({ method: 'POST', url: `/user-management/v1/user?app_user_id=x&client_id=${client.clientId}&client_secret=nope` })).statusCode,
    401,
  );
  const noGrant = await app.inject({ method: 'POST', url: `/oauth2/token?${creds}&grant_type=password` });
  t.equal(noGrant.statusCode, 400);
  t.equal(noGrant.json().error, 'unsupported_grant_type');
});

t.test(
  'codes work once (a replay revokes what the code gave); refresh tokens rotate and a reused one ends the sign-in; revocation is immediate',
  async (t) => {
    const { app, creds } = await setup(t);
    const { code: spent } = (await app.inject({ method: 'POST', url: `/user-management/v1/user?app_user_id=carol&${creds}` })).json();
    const stolen = (await tokenFor(app, creds, spent)).json();
    const reused = await tokenFor(app, creds, spent);
    t.equal(reused.statusCode, 400);
    t.equal(reused.json().error, 'invalid_grant');
    t.equal(
      (await app.inject({ method: 'GET', url: '/fhir/r4/Patient', headers: { authorization: `Bearer ${stolen.access_token}` } })).statusCode,
      401,
      'the replay revoked the first tokens',
    );

    const { code } = (await app.inject({ method: 'POST', url: `/user-management/v1/user/auth-code?app_user_id=carol&${creds}` })).json();
    const first = (await tokenFor(app, creds, code)).json();

    const refresh = (rt: string) => app.inject({ method: 'POST', url: `/oauth2/token?${creds}&grant_type=refresh_token&refresh_token=${rt}` });
    const second = await refresh(first.refresh_token);
    t.equal(second.statusCode, 200);
    t.not(second.json().refresh_token, first.refresh_token);
    const fhir = (at: string) => app.inject({ method: 'GET', url: '/fhir/r4/Patient', headers: { authorization: `Bearer ${at}` } });
    t.equal((await fhir(second.json().access_token)).statusCode, 200);

    // The spent refresh token again: refused, and the whole family (the new tokens too) is revoked.
    const replay = await refresh(first.refresh_token);
    t.equal(replay.statusCode, 400);
    t.equal(replay.json().error, 'invalid_grant');
    t.equal((await fhir(second.json().access_token)).statusCode, 401, 'the tokens of a replayed sign-in stop working');
    t.equal((await refresh(second.json().refresh_token)).statusCode, 400);

    // Revocation (RFC 7009) and introspection (RFC 7662).
    const { code: c2 } = (await app.inject({ method: 'POST', url: `/user-management/v1/user/auth-code?app_user_id=carol&${creds}` })).json();
    const live = (await tokenFor(app, creds, c2)).json();
    const intro = await app.inject({ method: 'POST', url: `/oauth2/introspect?${creds}&token=${live.access_token}` });
    t.equal(intro.json().active, true);
    t.equal(intro.json().app_user_id, 'carol');
    t.equal((await fhir(live.access_token)).statusCode, 200);
    t.equal((await app.inject({ method: 'POST', url: `/oauth2/revoke?${creds}&token=${live.access_token}` })).statusCode, 200);
    t.equal((await fhir(live.access_token)).statusCode, 401, 'a revoked token is refused at once');
    t.equal((await app.inject({ method: 'POST', url: `/oauth2/introspect?${creds}&token=${live.access_token}` })).json().active, false);
  },
);

t.test('an expired code is refused', async (t) => {
  const { app, creds } = await setup(t);
  const { code } = (await app.inject({ method: 'POST', url: `/user-management/v1/user?app_user_id=dave&${creds}` })).json();
  await app.pg.query("UPDATE trb_auth_code SET expires_at = now() - interval '1 second'");
  const r = await tokenFor(app, creds, code);
  t.equal(r.statusCode, 400);
  t.equal(r.json().error, 'invalid_grant');
});

t.test('FHIR without credentials is a 401 with an OperationOutcome, except metadata', async (t) => {
  const { app } = await setup(t);
  const r = await app.inject({ method: 'GET', url: '/fhir/r4/Patient' });
  t.equal(r.statusCode, 401);
  t.equal(r.json().resourceType, 'OperationOutcome');
  t.match(r.headers['www-authenticate'], /^Bearer/);
  t.equal((await app.inject({ method: 'GET', url: '/fhir/r4/Patient', headers: { authorization: `Bearer ${'a'.repeat(64)}` } })).statusCode, 401);
  t.equal((await app.inject({ method: 'GET', url: '/fhir/r4/metadata' })).statusCode, 200);
});

t.test('user-management calls are limited per app and hour: then 429 with Retry-After', async (t) => {
  const { app, creds } = await setup(t, 3);
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ method: 'GET', url: `/user-management/v1/user?${creds}` })).statusCode, 200);
  const limited = await app.inject({ method: 'GET', url: `/user-management/v1/user?${creds}` });
  t.equal(limited.statusCode, 429);
  t.ok(Number(limited.headers['retry-after']) >= 1 && Number(limited.headers['retry-after']) <= 3600);
  // Another app has its own budget.
  const other = await app.auth.createApp({ name: 'Other' });
  t.equal(
    (await app.inject({ method: 'GET', url: `/user-management/v1/user?client_id=${other.app.clientId}&client_secret=${other.clientSecret}` }))
      .statusCode,
    200,
  );
});

t.test('CLI: app create --json, list, rotate-secret, delete; user password', async (t) => {
  const url = await testDatabase(t);
  const cli = (...args: string[]) =>
    run(path.join(REPO, 'node_modules', '.bin', 'node'), [path.join(REPO, 'bin', 'tributary.ts'), ...args], {
      env: { ...process.env, DATABASE_URL: url },
      cwd: REPO,
    });
  const created = JSON.parse((await cli('app', 'create', '--name', 'CLI app', '--redirect-uri', 'https://app.example/cb', '--json')).stdout);
  t.match(created.client_id, /^[0-9a-f]{32}$/);
  t.match(created.client_secret, /^[0-9a-f]{64}$/);
  t.same(created.redirect_uris, ['https://app.example/cb']);
  const listed = JSON.parse((await cli('app', 'list', '--json')).stdout);
  t.equal(listed.length, 1);
  t.notOk('client_secret' in listed[0], 'a secret is shown once, never listed');
  const rotated = JSON.parse((await cli('app', 'rotate-secret', created.client_id, '--json')).stdout);
  t.not(rotated.client_secret, created.client_secret);

  // user password: the password comes on standard input; then the SMART login accepts it.
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  t.teardown(() => pool.end());
  const store = new AuthStore(pool);
  const client = (await store.appByClientId(created.client_id))!;
  const user = (await store.createUser(client.id, 'gus'))!;
  const withStdin = (input: string, ...args: string[]) =>
    new Promise<number>((resolve) => {
      const child = spawn(path.join(REPO, 'node_modules', '.bin', 'node'), [path.join(REPO, 'bin', 'tributary.ts'), ...args], {
        env: { ...process.env, DATABASE_URL: url },
        cwd: REPO,
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      child.on('exit', (code) => resolve(code ?? -1));
      child.stdin!.end(input);
    });
  t.equal(
    await withStdin('a long password\n', 'user', 'password', '--client-id', created.client_id, '--app-user-id', 'gus', '--username', 'gus1'),
    0,
  );
  t.equal((await store.checkPassword(client.id, 'gus1', 'a long password'))?.id, user.id);
  t.equal(
    await withStdin('short\n', 'user', 'password', '--client-id', created.client_id, '--app-user-id', 'gus', '--username', 'gus1'),
    2,
    'a short password is refused',
  );
  t.equal(
    await withStdin('a long password\n', 'user', 'password', '--client-id', created.client_id, '--app-user-id', 'nobody', '--username', 'x1'),
    1,
    'an unknown user is an error',
  );

  await cli('app', 'delete', created.client_id);
  t.same(JSON.parse((await cli('app', 'list', '--json')).stdout), []);
  await t.rejects(cli('app', 'create', '--name', 'Bad', '--redirect-uri', 'ftp://x'), 'a bad command fails with a message');
});

t.test('admin API: off without ADMIN_KEY; with it, apps are made and removed', async (t) => {
  const off = await buildTestApp(t);
  t.equal((await off.inject({ method: 'GET', url: '/admin/apps' })).statusCode, 404);
  const adminKey = 'k'.repeat(40);
  const app = await buildTestApp(t, { adminKey });
  t.equal((await app.inject({ method: 'GET', url: '/admin/apps', headers: { authorization: 'Bearer wrong' } })).statusCode, 401);
  const auth = { authorization: `Bearer ${adminKey}` };
  t.equal(
    (await app.inject({ method: 'POST', url: '/admin/apps', headers: auth, payload: { name: 'x', redirect_uris: ['javascript:alert(1)'] } }))
      .statusCode,
    400,
  );
  const made = await app.inject({
    method: 'POST',
    url: '/admin/apps',
    headers: auth,
    payload: { name: 'Admin-made', redirect_uris: ['https://a.example/cb'] },
  });
  t.equal(made.statusCode, 201);
  const { client_id, client_secret } = made.json();
  t.ok(await app.auth.authenticateApp(client_id, client_secret), 'the secret it shows works');
  t.equal((await app.inject({ method: 'GET', url: '/admin/apps', headers: auth })).json().length, 1);
  t.equal((await app.inject({ method: 'DELETE', url: `/admin/apps/${client_id}`, headers: auth })).statusCode, 204);
  t.notOk(await app.auth.authenticateApp(client_id, client_secret));
});

t.test('a token revoked through one server process is refused by another at once (tokens kept in memory are forgotten)', async (t) => {
  const url = await testDatabase(t);
  const [one, two] = [
    await buildApp(testConfig(url, { fhirAuth: 'required' }), { logger: false }),
    await buildApp(testConfig(url, { fhirAuth: 'required' }), { logger: false }),
  ];
  t.teardown(async () => {
    await one.close();
    await two.close();
  });
  const { app: client, clientSecret } = await one.auth.createApp({ name: 'Two processes' });
  const creds = `client_id=${client.clientId}&client_secret=${clientSecret}`;
  const { code } = (await one.inject({ method: 'POST', url: `/user-management/v1/user?app_user_id=erin&${creds}` })).json();
  const { access_token } = (await tokenFor(one, creds, code)).json();
  const read = () => two.inject({ method: 'GET', url: '/fhir/r4/Patient', headers: { authorization: `Bearer ${access_token}` } });
  t.equal((await read()).statusCode, 200);
  t.equal((await read()).statusCode, 200, 'the second read is answered from the token kept in memory');
  t.equal((await one.inject({ method: 'POST', url: `/oauth2/revoke?${creds}&token=${access_token}` })).statusCode, 200);
  // The other process hears the revocation as it commits (PostgreSQL NOTIFY); give it 2 s at most.
  const until = Date.now() + 2000;
  let status = (await read()).statusCode;
  while (status === 200 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
    status = (await read()).statusCode;
  }
  t.equal(status, 401);
});

t.test('expire: expired codes and tokens are removed, live ones kept', async (t) => {
  const { app, creds } = await setup(t);
  const { code } = (await app.inject({ method: 'POST', url: `/user-management/v1/user?app_user_id=fay&${creds}` })).json();
  const live = (await tokenFor(app, creds, code)).json();
  const { code: old } = (await app.inject({ method: 'POST', url: `/user-management/v1/user/auth-code?app_user_id=fay&${creds}` })).json();
  const stale = (await tokenFor(app, creds, old)).json();
  await app.pg.query("UPDATE trb_auth_code SET expires_at = now() - interval '1 minute'");
  await app.pg.query(
    "UPDATE trb_token SET expires_at = now() - interval '1 minute' WHERE family = (SELECT family FROM trb_token ORDER BY created_at DESC LIMIT 1)",
  );
  const removed = await app.auth.expire();
  t.equal(removed.codes, 2);
  t.equal(removed.tokens, 2, "the second sign-in's access and refresh tokens");
  t.equal((await app.inject({ method: 'GET', url: '/fhir/r4/Patient', headers: { authorization: `Bearer ${live.access_token}` } })).statusCode, 200);
  t.equal((await app.inject({ method: 'GET', url: '/fhir/r4/Patient', headers: { authorization: `Bearer ${stale.access_token}` } })).statusCode, 401);
});
