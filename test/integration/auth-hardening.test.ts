/**
 * The authorization server against a hostile client (issue 14): wrong passwords limited per
 * username and per address across processes, a sign-in request ended after 5 of them, the token
 * endpoints rate-limited, no user enumeration by timing, a replayed code revoking what it gave, and
 * every malformed HTTP Basic header a 401.
 */
import { createHash, randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.ts';
import { buildTestApp, testConfig, testDatabase } from '../helper.ts';
import type { App } from '../../src/auth/store.ts';

const REDIRECT = 'https://app.example/callback';
const PASSWORD = 'correct horse battery';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** An app with a user who signs in with a password; `app` built with the given settings. */
async function setup(app: FastifyInstance, name = 'Hardened') {
  const { app: client, clientSecret } = await app.auth.createApp({ name, redirectUris: [REDIRECT] });
  const user = (await app.auth.createUser(client.id, `person-${client.id}`))!;
  const username = `amy${client.id}`;
  await app.auth.setPassword(client.id, user.id, username, PASSWORD);
  return { client, clientSecret, user, username };
}

/** A new sign-in request (GET /oauth2/authorize with PKCE): its id and the verifier. */
async function authorize(app: FastifyInstance, client: App, remoteAddress = '127.0.0.1') {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: client.clientId,
    redirect_uri: REDIRECT,
    scope: 'launch/patient patient/*.rs offline_access',
    state: 'st',
    aud: `${app.config.baseUrl}/fhir/r4`,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  const page = await app.inject({ method: 'GET', url: `/oauth2/authorize?${q}`, remoteAddress });
  const request = /name="request" value="([0-9a-f]{64})"/.exec(page.body)?.[1];
  if (!request) throw new Error(`no sign-in form: ${page.statusCode} ${page.body.slice(0, 200)}`);
  return { request, verifier };
}

const login = (app: FastifyInstance, request: string, username: string, password: string, remoteAddress = '127.0.0.1') =>
  app.inject({ method: 'POST', url: '/oauth2/authorize/login', headers: FORM, payload: form({ request, username, password }), remoteAddress });

t.test('a malformed Authorization: Basic header is 401 invalid_client, never a 500', async (t) => {
  const app = await buildTestApp(t, { fhirAuth: 'required' });
  const { client, clientSecret } = await setup(app);
  const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
  const shapes: Record<string, string> = {
    'bad percent-encoding in the id': `Basic ${b64(`%zz:${clientSecret}`)}`,
    'bad percent-encoding in the secret': `Basic ${b64(`${client.clientId}:%E0%A4%A`)}`,
    'not base64': 'Basic !!!not*base64!!!',
    'no colon': `Basic ${b64(client.clientId)}`,
    'an empty id': `Basic ${b64(`:${clientSecret}`)}`,
    'an empty secret': `Basic ${b64(`${client.clientId}:`)}`,
    'nothing after Basic': 'Basic',
    'only spaces after Basic': 'Basic    ',
    'bytes that are not UTF-8': `Basic ${b64(Buffer.from([0xff, 0xfe, 0x3a, 0x41]))}`,
    oversized: `Basic ${b64(`${'a'.repeat(3000)}:${'b'.repeat(3000)}`)}`,
  };
  for (const [shape, authorization] of Object.entries(shapes)) {
    const r = await app.inject({
      method: 'POST',
      url: '/oauth2/token',
      headers: { ...FORM, authorization },
      payload: form({ grant_type: 'client_credentials' }),
    });
    t.equal(r.statusCode, 401, `token endpoint, ${shape}`);
    t.equal(r.json().error, 'invalid_client', shape);
    // Even with a right client_id and secret in the form: the header given is wrong.
    const both = await app.inject({
      method: 'POST',
      url: '/oauth2/token',
      headers: { ...FORM, authorization },
      payload: form({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: clientSecret }),
    });
    t.equal(both.statusCode, 401, `with parameters too, ${shape}`);
    const users = await app.inject({ method: 'GET', url: '/user-management/v1/user', headers: { authorization } });
    t.same([users.statusCode, users.json().success], [401, false], `user-management API, ${shape}`);
    const fhir = await app.inject({ method: 'GET', url: '/fhir/r4/Patient', headers: { authorization } });
    t.same([fhir.statusCode, fhir.json().resourceType], [401, 'OperationOutcome'], `FHIR API, ${shape}`);
  }
  const good = await app.inject({
    method: 'POST',
    url: '/oauth2/token',
    headers: { ...FORM, authorization: `Basic ${b64(`${encodeURIComponent(client.clientId)}:${encodeURIComponent(clientSecret)}`)}` },
    payload: form({ grant_type: 'client_credentials' }),
  });
  t.equal(good.statusCode, 200, 'a well-formed header still works');
});

t.test('a replayed code is refused and revokes the access and refresh tokens of its first redemption', async (t) => {
  const app = await buildTestApp(t, { fhirAuth: 'required' });
  const { client, clientSecret, username } = await setup(app);
  const creds = { client_id: client.clientId, client_secret: clientSecret };
  const token = (fields: Record<string, string>) =>
    app.inject({ method: 'POST', url: '/oauth2/token', headers: FORM, payload: form({ ...creds, ...fields }) });
  const active = async (tok: string) =>
    (await app.inject({ method: 'POST', url: '/oauth2/introspect', headers: FORM, payload: form({ ...creds, token: tok }) })).json().active;
  const fhirStatus = async (tok: string) =>
    (await app.inject({ method: 'GET', url: '/fhir/r4/Patient', headers: { authorization: `Bearer ${tok}` } })).statusCode;

  const check = async (t: Test, redeem: () => ReturnType<typeof token>) => {
    const first = await redeem();
    t.equal(first.statusCode, 200, first.statusCode === 200 ? 'the first redemption' : first.body);
    const { access_token, refresh_token } = first.json();
    t.ok(refresh_token);
    // The refresh token is used once: the rotated tokens belong to the same sign-in.
    const rotated = await token({ grant_type: 'refresh_token', refresh_token });
    t.equal(rotated.statusCode, 200);
    t.equal(await fhirStatus(rotated.json().access_token), 200);
    t.equal(await active(access_token), true);
    const replay = await redeem();
    t.equal(replay.statusCode, 400);
    t.match(replay.json(), { error: 'invalid_grant', error_description: /already used.*revoked/ });
    for (const [what, tok] of [
      ['access', access_token],
      ['rotated access', rotated.json().access_token],
      ['rotated refresh', rotated.json().refresh_token],
    ]) {
      t.equal(await active(tok), false, `introspection: the ${what} token is inactive`);
    }
    t.equal(await fhirStatus(access_token), 401, 'the FHIR API refuses the first access token');
    t.equal(await fhirStatus(rotated.json().access_token), 401, 'and the one refreshed from it');
    t.equal((await token({ grant_type: 'refresh_token', refresh_token: rotated.json().refresh_token })).statusCode, 400, 'the refresh token is dead');
    t.equal((await redeem()).statusCode, 400, 'a third try is refused too');
  };

  await t.test('the user-management code', async (t) => {
    const { code } = (
      await app.inject({ method: 'POST', url: '/user-management/v1/user?app_user_id=replayed', headers: FORM, payload: form(creds) })
    ).json();
    await check(t, () => token({ grant_type: 'authorization_code', code }));
  });

  await t.test('the SMART code (PKCE)', async (t) => {
    const { request, verifier } = await authorize(app, client);
    t.equal((await login(app, request, username, PASSWORD)).statusCode, 200);
    const consent = await app.inject({
      method: 'POST',
      url: '/oauth2/authorize/consent',
      headers: FORM,
      payload: form({ request, decision: 'approve' }),
    });
    const code = new URL(consent.headers.location as string).searchParams.get('code')!;
    await check(t, () => token({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier }));
  });
});

t.test('wrong passwords: a request ends after 5; the username is locked, existing or not, across processes, longer each time', async (t) => {
  const url = await testDatabase(t);
  const [one, two] = [
    await buildApp(testConfig(url, { fhirAuth: 'required' }), { logger: false }),
    await buildApp(testConfig(url, { fhirAuth: 'required' }), { logger: false }),
  ];
  t.teardown(async () => {
    await one.close();
    await two.close();
  });
  const { client, username } = await setup(one);
  const ip = '10.20.0.1';

  // One request, 5 wrong passwords: the first 4 say "wrong", the 5th ends the request.
  const { request } = await authorize(one, client, ip);
  for (let i = 1; i <= 4; i++) {
    const r = await login(one, request, username, `wrong ${i}`, ip);
    t.equal(r.statusCode, 401, `wrong password ${i}`);
    t.match(r.body, /username or password is wrong/);
  }
  const fifth = await login(one, request, username, 'wrong 5', ip);
  t.equal(fifth.statusCode, 400);
  t.match(fifth.body, /This sign-in has ended/);
  t.match(fifth.body, /wrong 5 times.*wait 5 minutes.*Go back to the app and start again/s);
  t.equal((await login(one, request, username, PASSWORD, ip)).statusCode, 400, 'the ended request takes no more passwords, even the right one');
  t.match((await login(one, request, username, PASSWORD, ip)).body, /expired/);

  // The username is locked now, for everyone, in every process: even the right password waits.
  const again = await authorize(two, client, '10.20.0.2');
  const locked = await login(two, again.request, username, PASSWORD, '10.20.0.2');
  t.equal(locked.statusCode, 429, 'locked in the other process too (counted in PostgreSQL)');
  const wait = Number(locked.headers['retry-after']);
  t.ok(wait > 280 && wait <= 300, `Retry-After about 5 minutes (${wait})`);
  t.match(locked.body, /Too many wrong passwords for this username: wait 5 minutes, then try again/);

  // A username that does not exist is counted and locked the same way: the answers match those
  // of another user of the same app.
  const bob = (await one.auth.createUser(client.id, `bob-${client.id}`))!;
  await one.auth.setPassword(client.id, bob.id, `bob${client.id}`, PASSWORD);
  const ghost = `nobody-${client.id}`;
  const fiveWrong = async (name: string, ip: string) => {
    const { request } = await authorize(one, client, ip);
    const answers: string[] = [];
    for (let i = 1; i <= 5; i++) {
      const r = await login(i % 2 ? one : two, request, name, `wrong ${i}`, ip);
      answers.push(`${r.statusCode} ${r.headers['retry-after'] ?? '-'} ${/<p class="error">([^<]*)</.exec(r.body)?.[1]}`);
    }
    return answers;
  };
  const ghostAnswers = await fiveWrong(ghost, '10.20.0.3');
  const bobAnswers = await fiveWrong(`bob${client.id}`, '10.20.0.4');
  t.same(
    ghostAnswers.map((a) => a.replace(/ (29\d|300) /, ' ~300 ')),
    bobAnswers.map((a) => a.replace(/ (29\d|300) /, ' ~300 ')),
    'an unknown username gets the answers an existing one gets',
  );
  t.match(bobAnswers[4], /^400 .*has ended|wrong 5 times/);
  const ghostLocked = await login(one, (await authorize(one, client, '10.20.0.6')).request, ghost, 'x', '10.20.0.6');
  t.equal(ghostLocked.statusCode, 429);
  t.match(ghostLocked.body, /for this username: wait 5 minutes/);

  // The lock passes; 5 more wrong passwords lock it again, for twice as long.
  await one.pg.query("UPDATE trb_signin_failure SET locked_until = now() - interval '1 second'");
  const later = await authorize(one, client, '10.20.0.7');
  for (let i = 1; i <= 4; i++) t.equal((await login(one, later.request, username, `again ${i}`, '10.20.0.7')).statusCode, 401);
  const relocked = await login(one, later.request, username, 'again 5', '10.20.0.7');
  const second = Number(relocked.headers['retry-after']);
  t.ok(second > 580 && second <= 600, `the second lock lasts 10 minutes (${second})`);
  t.match(relocked.body, /wait 10 minutes/);

  // A right password ends the count: 4 wrong, right, 4 wrong is no lock.
  const fresh = await setup(one, 'Fourth');
  const tries = async (n: number, ip: string) => {
    const { request } = await authorize(one, fresh.client, ip);
    for (let i = 1; i <= n; i++) t.equal((await login(one, request, fresh.username, `nope ${i}`, ip)).statusCode, 401);
    return request;
  };
  const r1 = await tries(4, '10.20.0.8');
  t.equal((await login(one, r1, fresh.username, PASSWORD, '10.20.0.8')).statusCode, 200, 'the 5th try, right, signs in');
  const r2 = await tries(4, '10.20.0.9');
  t.equal((await login(one, r2, fresh.username, PASSWORD, '10.20.0.9')).statusCode, 200, 'the count began again after the sign-in');

  // The hourly expiry removes counts a day old that lock nothing.
  await one.pg.query("UPDATE trb_signin_failure SET updated_at = now() - interval '2 days', locked_until = NULL");
  t.ok((await one.auth.expire()).signin_failures > 0);
  t.equal((await one.pg.query('SELECT count(*)::int AS n FROM trb_signin_failure')).rows[0].n, 0);
});

t.test('wrong passwords sent all at once get 5 password checks between them, not one each', async (t) => {
  const app = await buildTestApp(t, { fhirAuth: 'required' });
  const { client, username } = await setup(app);
  const requests = await Promise.all(Array.from({ length: 15 }, (_, i) => authorize(app, client, `10.25.0.${i + 1}`)));
  const answers = await Promise.all(requests.map(({ request }, i) => login(app, request, username, `burst ${i}`, `10.25.0.${i + 1}`)));
  const statuses = answers.map((r) => r.statusCode);
  t.comment(`answers: ${statuses.join(' ')}`);
  t.equal(statuses.filter((s) => s === 401).length, 4, '4 said wrong; the 5th check set the lock');
  t.equal(statuses.filter((s) => s === 429).length, 11, 'the rest were refused unchecked (or by the lock the 5th set), each saying how long to wait');
  t.ok(answers.filter((r) => r.statusCode === 429).every((r) => Number(r.headers['retry-after']) > 0 && /wait 5 minutes/.test(r.body)));
});

t.test('one address failing across many usernames is locked, whatever username it tries next', async (t) => {
  const app = await buildTestApp(t, { fhirAuth: 'required', signinAddressFailures: 6 });
  const { client, username } = await setup(app);
  const ip = '10.30.0.1';
  for (let i = 1; i <= 5; i++) {
    const { request } = await authorize(app, client, ip);
    const r = await login(app, request, `guess-${i}`, 'password1', ip);
    t.equal(r.statusCode, 401, `guess ${i}`);
  }
  const { request } = await authorize(app, client, ip);
  const sixth = await login(app, request, 'guess-6', 'password1', ip);
  t.equal(sixth.statusCode, 429);
  t.match(sixth.body, /from your network: wait 5 minutes/);
  t.ok(Number(sixth.headers['retry-after']) > 280);
  const real = await login(app, request, username, PASSWORD, ip);
  t.equal(real.statusCode, 429, 'even a right password waits at that address');
  const elsewhere = await authorize(app, client, '10.30.0.2');
  t.equal((await login(app, elsewhere.request, username, PASSWORD, '10.30.0.2')).statusCode, 200, 'another address signs in');
});

t.test('the token endpoints are rate-limited per address and per client_id: 429 slow_down with Retry-After', async (t) => {
  const app = await buildTestApp(t, { fhirAuth: 'required', tokenRateLimit: 5 });
  const { client, clientSecret } = await setup(app);
  const token = (fields: Record<string, string>, remoteAddress: string, url = '/oauth2/token') =>
    app.inject({ method: 'POST', url, headers: FORM, payload: form(fields), remoteAddress });

  // One address, any client_ids (each new): the 6th request of the minute is refused.
  for (let i = 1; i <= 5; i++)
    t.equal((await token({ grant_type: 'client_credentials', client_id: `stranger-${i}`, client_secret: 'x' }, '10.40.0.1')).statusCode, 401);
  const limited = await token({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: clientSecret }, '10.40.0.1');
  t.equal(limited.statusCode, 429);
  t.match(limited.json(), { error: 'slow_down', error_description: /from this address/ });
  t.same(Object.keys(limited.json()).sort(), ['error', 'error_description']);
  const after = Number(limited.headers['retry-after']);
  t.ok(after >= 1 && after <= 60, `Retry-After ${after}`);
  t.equal(
    (await token({ token: 'x', client_id: client.clientId, client_secret: clientSecret }, '10.40.0.1', '/oauth2/introspect')).statusCode,
    429,
    'introspection shares the count',
  );
  t.equal(
    (await token({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: clientSecret }, '10.40.0.2')).statusCode,
    200,
    'another address is not limited',
  );

  // One client_id from many addresses: limited too (10.40.0.2 above counted once).
  for (let i = 3; i <= 6; i++)
    t.equal(
      (await token({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: clientSecret }, `10.40.0.${i}`)).statusCode,
      200,
    );
  const perClient = await token({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: clientSecret }, '10.40.0.7');
  t.equal(perClient.statusCode, 429);
  t.match(perClient.json(), { error: 'slow_down', error_description: /for this client_id/ });
  const basic = `Basic ${Buffer.from(`${client.clientId}:${clientSecret}`).toString('base64')}`;
  const viaBasic = await app.inject({
    method: 'POST',
    url: '/fhir/oauth2/token',
    headers: { ...FORM, authorization: basic },
    payload: form({ grant_type: 'client_credentials' }),
    remoteAddress: '10.40.0.8',
  });
  t.equal(viaBasic.statusCode, 429, 'the client_id of an HTTP Basic header is the same client');
  // User-management routes are not counted here (they have their own hourly limit).
  t.equal(
    (
      await app.inject({
        method: 'GET',
        url: `/user-management/v1/user?client_id=${client.clientId}&client_secret=${clientSecret}`,
        remoteAddress: '10.40.0.1',
      })
    ).statusCode,
    200,
  );
});

t.test('no user enumeration by timing: an unknown username costs what a wrong password does', async (t) => {
  const app = await buildTestApp(t, { fhirAuth: 'required', tokenRateLimit: 100_000 });
  const { client, clientSecret, username } = await setup(app);
  await app.auth.checkPassword(client.id, 'warm-up', 'x');
  const N = 25;
  const unknown: number[] = [];
  const wrong: number[] = [];
  const time = async (fn: () => Promise<unknown>) => {
    const s = process.hrtime.bigint();
    await fn();
    return Number(process.hrtime.bigint() - s) / 1e6;
  };
  // Interleaved, so that the machine's load weighs on both alike, and each first in turn (whichever
  // goes first in a pair pays for what the pair before left, a collection say).
  for (let i = 0; i < N; i++) {
    const u = () => time(() => app.auth.checkPassword(client.id, `nobody-${i}`, 'a wrong password'));
    const w = () => time(() => app.auth.checkPassword(client.id, username, 'a wrong password'));
    if (i % 2 === 0) {
      unknown.push(await u());
      wrong.push(await w());
    } else {
      wrong.push(await w());
      unknown.push(await u());
    }
  }
  const [mu, mw] = [median(unknown), median(wrong)];
  t.comment(`sign-in, median of ${N}: unknown username ${mu.toFixed(1)} ms, wrong password ${mw.toFixed(1)} ms`);
  t.ok(mw > 5, 'a wrong password costs a scrypt verification');
  t.ok(Math.abs(mu - mw) < Math.max(0.25 * mw, 3), `the medians differ by ${Math.abs(mu - mw).toFixed(1)} ms (under a quarter)`);

  // The user-management code exchange at the token endpoint: wrong tries, with unknown client_ids
  // and a wrong secret, spend nothing. (Their time is not compared: a client_id is public in OAuth,
  // and the known app's lookup is kept in memory where an unknown one is not.)
  const { code } = (
    await app.inject({
      method: 'POST',
      url: '/user-management/v1/user?app_user_id=timed',
      headers: FORM,
      payload: form({ client_id: client.clientId, client_secret: clientSecret }),
    })
  ).json();
  for (let i = 0; i < 5; i++) {
    const unknownApp = await app.inject({
      method: 'POST',
      url: '/oauth2/token',
      headers: FORM,
      payload: form({ grant_type: 'authorization_code', code, client_id: randomBytes(16).toString('hex'), client_secret: 'f'.repeat(64) }),
    });
    const wrongSecret = await app.inject({
      method: 'POST',
      url: '/oauth2/token',
      headers: FORM,
      payload: form({ grant_type: 'authorization_code', code, client_id: client.clientId, client_secret: 'f'.repeat(64) }),
    });
    t.same([unknownApp.statusCode, wrongSecret.statusCode], [401, 401]);
  }
  const redeemed = await app.inject({
    method: 'POST',
    url: '/oauth2/token',
    headers: FORM,
    payload: form({ grant_type: 'authorization_code', code, client_id: client.clientId, client_secret: clientSecret }),
  });
  t.equal(redeemed.statusCode, 200, 'the code was never spent by the wrong tries');
});
