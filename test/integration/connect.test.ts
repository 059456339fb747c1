/**
 * The connect flow over real HTTP, against the built-in sandbox systems (this server, listening):
 * the connect URL, discovery, the system's sign-in and consent, the callback's code exchange with
 * the system's client authentication (HTTP Basic at North Valley, a public client at Lakeside),
 * the connection stored with its tokens sealed, the app's redirect; the connections list and
 * disconnecting (revoked at the system). And every failure: a bad link, an unknown system, no
 * registration, an unreachable system, no SMART configuration, the person declining, a state
 * missing, forged, reused or expired, and a token exchange the system refuses. The sign-in is
 * bound to the browser that started it (a callback in another cookie jar connects nothing and
 * spends nothing); a server without its encryption key refuses at the connect URL; a vendor-wide
 * registration is sent only to the hosts it names; the connections API takes only the app's
 * user token, not a SMART app's narrower one.
 */
import http from 'node:http';
import { Writable } from 'node:stream';
import * as oauth from 'oauth4webapi';
import t, { type Test } from 'tap';
import { buildApp } from '../../src/app.ts';
import { importDirectory } from '../../src/directory/importer.ts';
import { clientForSystem, connectionSealKey, refresh, registrationFor, systemClient } from '../../src/connect/client.ts';
import { syncConnection } from '../../src/sync/run.ts';
import { syncDeps } from '../../plugins/sync.ts';
import { hostAllowed, saveRegistration } from '../../src/connect/registrations.ts';
import { generateSystem } from '../../src/sandbox/generate.ts';
import type { SandboxDefinition } from '../../src/sandbox/systems.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';
import { Browser, browser, CONNECT_SANDBOXES, get, location as locationOf, signIn as signInAt } from './connect-support.ts';

// The two shipped systems, and two more that take client_secret_post and private_key_jwt.
const DEFS = CONNECT_SANDBOXES;
const [NV, LS, POST, KEY] = DEFS;
const port = await freePort();
const BASE = `http://127.0.0.1:${port}`;
const APP_CALLBACK = 'https://app.example/callback';
const app = await buildApp(testConfig(await testDatabase(t), { baseUrl: BASE, sandboxes: true, sandboxSystems: DEFS, fhirAuth: 'required' }), {
  logger: false,
});
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());
await app.sandboxesLoaded;

const { app: demo } = await app.auth.createApp({ name: 'Demo app', redirectUris: [APP_CALLBACK] });
async function newUser(name: string) {
  const user = (await app.auth.createUser(demo.id, name))!;
  const tokens = await app.auth.exchangeCode(demo, await app.auth.newCode(demo.id, user.id));
  return { user, token: tokens.access_token };
}
const patientOf = (d: SandboxDefinition) =>
  generateSystem({ seed: d.seed, patients: d.patients, idPrefix: d.idPrefix, systemName: d.title }).patients.find((p) => p.personKey !== 'shared')!;
const connectUrl = (systemId: string, token: string, state = 'app-state-1') =>
  `${BASE}/connect/system/clinical/${systemId}?client_id=${demo.clientId}&access_token=${token}&state=${state}`;

const location = (res: Response) => locationOf(res, BASE);
const signIn = (t: Test, startUrl: string, username: string, password: string, decision = 'approve', using = browser) =>
  signInAt(t, BASE, startUrl, username, password, decision, using);
const connectionsOf = async (userId: string) =>
  (await app.pg.query('SELECT count(*)::int AS n FROM trb_connection WHERE user_id = $1', [userId])).rows[0].n as number;

t.test('connect North Valley (client_secret_basic): back at the app, connected, tokens sealed', async (t) => {
  const { user, token } = await newUser('conn-1');
  const start = await get(connectUrl(NV.directoryId, token));
  const authorize = location(start);
  t.equal(authorize.pathname, '/oauth2/authorize');
  t.same(
    ['client_id', 'code_challenge_method', 'aud', 'scope', 'redirect_uri'].map((k) => authorize.searchParams.get(k)),
    [
      NV.clientId,
      'S256',
      `${BASE}/sandbox/${NV.name}/fhir/r4`,
      'launch/patient openid fhirUser offline_access patient/*.read',
      `${BASE}/connect/callback`,
    ],
  );
  t.match(authorize.searchParams.get('state'), /^[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$/, 'a signed state');
  const p = patientOf(NV);
  const callback = await signIn(t, connectUrl(NV.directoryId, token), p.username, p.password);
  t.equal(callback.pathname, '/connect/callback');
  const back = await get(callback.toString());
  const appUrl = location(back);
  t.equal(`${appUrl.origin}${appUrl.pathname}`, APP_CALLBACK);
  t.same(Object.fromEntries(appUrl.searchParams), { success: 'true', system_id: NV.directoryId, state: 'app-state-1' });

  const list = await (await fetch(`${BASE}/connect/connections`, { headers: { authorization: `Bearer ${token}` } })).json();
  t.equal(list.entry.length, 1);
  t.match(list.entry[0], { system_id: NV.directoryId, status: 'active', patient_id: p.resources[0].id, system_name: NV.title });
  const { rows } = await app.pg.query<{ access_token_sealed: Buffer; refresh_token_sealed: Buffer }>(
    'SELECT access_token_sealed, refresh_token_sealed FROM trb_connection WHERE user_id = $1',
    [user.id],
  );
  const accessToken = app.vault.decrypt(rows[0].access_token_sealed, `${user.id}:${NV.directoryId}`, 'connection-token');
  t.notOk(rows[0].access_token_sealed.includes(Buffer.from(accessToken)), 'the token is not stored in the clear');
  t.ok(rows[0].refresh_token_sealed, 'offline_access: a refresh token, sealed');
  const read = await fetch(`${BASE}/sandbox/${NV.name}/fhir/r4/Patient/${p.resources[0].id}`, {
    headers: { authorization: `Bearer ${accessToken}` },
  });
  t.equal(read.status, 200, 'the stored token reads the record at the system');

  // Disconnect: revoked at the system, forgotten here.
  const refreshToken = app.vault.decrypt(rows[0].refresh_token_sealed, `${user.id}:${NV.directoryId}`, 'connection-token');
  const other = await newUser('conn-other');
  t.equal(
    (await fetch(`${BASE}/connect/connections/${list.entry[0].id}`, { method: 'DELETE', headers: { authorization: `Bearer ${other.token}` } }))
      .status,
    404,
    "another user's connection is not theirs to end",
  );
  const del = await fetch(`${BASE}/connect/connections/${list.entry[0].id}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
  t.same(await del.json(), { success: true, revoked: true, purged: 0 });
  t.equal(await app.auth.accessFor(accessToken), undefined, 'the access token is revoked at the system');
  const { rows: live } = await app.pg.query(
    "SELECT count(*)::int AS n FROM trb_token WHERE kind = 'refresh' AND revoked_at IS NULL AND token_sha256 = sha256($1::bytea)",
    [Buffer.from(refreshToken)],
  );
  t.equal(live[0].n, 0, 'and its refresh token');
  t.same((await (await fetch(`${BASE}/connect/connections`, { headers: { authorization: `Bearer ${token}` } })).json()).entry, []);
});

t.test('connect Lakeside (a public client with PKCE)', async (t) => {
  const { token } = await newUser('conn-2');
  const p = patientOf(LS);
  const back = await get((await signIn(t, connectUrl(LS.directoryId, token, 'x'), p.username, p.password)).toString());
  t.equal(location(back).searchParams.get('success'), 'true');
});

t.test('client_secret_post and private_key_jwt (signed with the key published at /connect/jwks); refresh rotates', async (t) => {
  const jwks = await (await fetch(`${BASE}/connect/jwks`)).json();
  t.match(jwks.keys[0], { kty: 'RSA', alg: 'RS384', use: 'sig' });
  t.notOk('d' in jwks.keys[0], 'the public part only');
  for (const d of [POST, KEY]) {
    const conf = await (await fetch(`${BASE}/sandbox/${d.name}/fhir/r4/.well-known/smart-configuration`)).json();
    t.same(conf.token_endpoint_auth_methods_supported, [d.auth]);
    const { user, token } = await newUser(`conn-${d.name}`);
    const p = patientOf(d);
    const back = location(await get((await signIn(t, connectUrl(d.directoryId, token), p.username, p.password)).toString()));
    t.equal(back.searchParams.get('success'), 'true', `${d.auth}: connected (${back.searchParams.get('error_description') ?? ''})`);
    // The stored refresh token, used the way the sync will: it rotates, and the old one is spent.
    const { rows } = await app.pg.query<{ refresh_token_sealed: Buffer }>('SELECT refresh_token_sealed FROM trb_connection WHERE user_id = $1', [
      user.id,
    ]);
    const old = app.vault.decrypt(rows[0].refresh_token_sealed, `${user.id}:${d.directoryId}`, 'connection-token');
    const system = { id: d.directoryId, vendor: 'Tributary sandbox' };
    const sc = await systemClient(
      `${BASE}/sandbox/${d.name}/fhir/r4`,
      (await registrationFor(app.pg, app.vault, system))!,
      BASE,
      () => app.clientKeys.load(),
      app.outbound.fetch,
      app.discovery,
    );
    const renewed = await refresh(sc, old);
    t.ok(renewed.accessToken && renewed.refreshToken && renewed.refreshToken !== old, 'new tokens, a new refresh token');
    await t.rejects(refresh(sc, old), { code: 'invalid_grant' }, 'the old refresh token is spent');
  }
});

t.test('the person declines: the app hears access_denied, nothing is connected', async (t) => {
  const { user, token } = await newUser('conn-3');
  const p = patientOf(NV);
  const back = location(await get((await signIn(t, connectUrl(NV.directoryId, token), p.username, p.password, 'deny')).toString()));
  t.same([back.searchParams.get('error'), back.searchParams.get('state')], ['access_denied', 'app-state-1']);
  t.match(back.searchParams.get('error_description'), /declined/);
  t.equal((await app.pg.query('SELECT count(*)::int AS n FROM trb_connection WHERE user_id = $1', [user.id])).rows[0].n, 0);
});

t.test('a state missing, forged, reused or expired ends on a page that says so', async (t) => {
  const { token } = await newUser('conn-4');
  const p = patientOf(NV);
  const callback = await signIn(t, connectUrl(NV.directoryId, token), p.username, p.password);
  const page = async (url: string) => {
    const res = await get(url);
    return [res.status, await res.text()] as const;
  };
  const [missingStatus, missing] = await page(`${BASE}/connect/callback?code=abc`);
  t.equal(missingStatus, 400);
  t.match(missing, /start again/);
  const forged = new URL(callback);
  forged.searchParams.set('state', `${'a'.repeat(43)}.${'b'.repeat(43)}`);
  t.equal((await page(forged.toString()))[0], 400, 'a state this server did not sign');
  t.equal((await get(callback.toString())).status, 302, 'the real one, once');
  const [reusedStatus, reused] = await page(callback.toString());
  t.equal(reusedStatus, 400);
  t.match(reused, /expired or was already used/);

  const second = await signIn(t, connectUrl(NV.directoryId, token), p.username, p.password);
  await app.pg.query("UPDATE trb_connect_state SET expires_at = now() - interval '1 second'");
  t.equal((await page(second.toString()))[0], 400, 'an expired state');
  const stale = (await app.pg.query('SELECT count(*)::int AS n FROM trb_connect_state WHERE expires_at < now()')).rows[0].n as number;
  t.ok(stale >= 1);
  t.equal((await app.auth.expire()).connect_states, stale, 'the hourly job removes the expired sign-ins');
  t.equal(await app.pg.query('SELECT count(*)::int AS n FROM trb_connect_state').then((r) => r.rows[0].n), 0);
});

t.test('a token exchange the system refuses: the app hears why', async (t) => {
  const { token } = await newUser('conn-5');
  const p = patientOf(NV);
  const callback = await signIn(t, connectUrl(NV.directoryId, token), p.username, p.password);
  const { rows } = await app.pg.query<{ client_secret_sealed: Buffer }>(
    'SELECT client_secret_sealed FROM trb_client_registration WHERE system_id = $1',
    [NV.directoryId],
  );
  await app.pg.query('UPDATE trb_client_registration SET client_secret_sealed = $2 WHERE system_id = $1', [
    NV.directoryId,
    app.vault.encrypt('not-the-secret', NV.clientId, 'registration-secret'),
  ]);
  t.teardown(() =>
    app.pg.query('UPDATE trb_client_registration SET client_secret_sealed = $2 WHERE system_id = $1', [NV.directoryId, rows[0].client_secret_sealed]),
  );
  const back = location(await get(callback.toString()));
  t.equal(back.searchParams.get('error'), 'invalid_client');
  t.match(back.searchParams.get('error_description'), /refused/);
});

t.test('bad links and systems that cannot be connected', async (t) => {
  const { token } = await newUser('conn-6');
  const bad = await get(`${BASE}/connect/system/clinical/${NV.directoryId}?client_id=${demo.clientId}&access_token=nope`);
  t.equal(bad.status, 401);
  t.match(await bad.text(), /Go back to the app/);
  const appError = async (systemId: string) => {
    const res = await get(connectUrl(systemId, token));
    t.equal(res.status, 302);
    const u = location(res);
    t.equal(`${u.origin}${u.pathname}`, APP_CALLBACK);
    return [u.searchParams.get('error'), u.searchParams.get('error_description') ?? ''] as const;
  };
  t.same(await appError('no-such-system'), ['invalid_request', 'There is no such health system in the directory.']);

  // A FHIR server that answers metadata but names no authorization server, one that is down, and one without a registration.
  const plain = http.createServer((req, res) => {
    res
      .writeHead(req.url === '/fhir/metadata' ? 200 : 404, { 'content-type': 'application/fhir+json' })
      .end(JSON.stringify({ resourceType: 'CapabilityStatement', rest: [{ mode: 'server' }] }));
  });
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => plain.close(() => r())));
  const down = await freePort();
  await importDirectory(
    app.pg,
    [
      {
        name: 'local.csv',
        content: `id,url,name\nno-smart,http://127.0.0.1:${(plain.address() as { port: number }).port}/fhir,Plain FHIR\ndown,http://127.0.0.1:${down}/fhir,Down Clinic\nunregistered,https://unregistered.example/fhir,Nobody Registered\n`,
      },
    ],
    undefined,
    { allow: app.outbound.allow },
  );
  await app.pg.query(
    `INSERT INTO trb_client_registration (system_id, client_id, auth_method) VALUES ('no-smart', 'x', 'none'), ('down', 'x', 'none')`,
  );
  const [noSmart, noSmartWhy] = await appError('no-smart');
  t.equal(noSmart, 'server_error');
  t.match(noSmartWhy, /does not say where to sign in/);
  const [unreachable, unreachableWhy] = await appError('down');
  t.equal(unreachable, 'temporarily_unavailable');
  t.match(unreachableWhy, /try again later/);
  const [unregistered, unregisteredWhy] = await appError('unregistered');
  t.equal(unregistered, 'unauthorized_client');
  t.match(unregisteredWhy, /no client registration/);
  t.equal(
    (await app.pg.query('SELECT count(*)::int AS n FROM trb_connect_state WHERE system_id IN ($1, $2, $3)', ['no-smart', 'down', 'unregistered']))
      .rows[0].n,
    0,
    'no dangling sign-in',
  );
});

t.test("the connect cookie: HttpOnly, SameSite=Lax, Path=/connect, for the sign-in's 10 minutes; Secure when BASE_URL is https", async (t) => {
  const { token } = await newUser('cookie-1');
  const start = await new Browser().get(connectUrl(NV.directoryId, token));
  const [cookie] = start.headers.getSetCookie();
  t.match(cookie, /^trb_connect=[A-Za-z0-9_-]{43};/);
  t.same(cookie.split('; ').slice(1).sort(), ['HttpOnly', 'Max-Age=600', 'Path=/connect', 'SameSite=Lax'], 'no Secure over http');
  // The same database behind a server whose BASE_URL is https.
  const https = await buildApp(testConfig(app.config.databaseUrl!, { baseUrl: 'https://tributary.test' }), { logger: false });
  t.teardown(() => https.close());
  const res = await https.inject({ url: `/connect/system/clinical/${NV.directoryId}?client_id=${demo.clientId}&access_token=${token}` });
  t.equal(res.statusCode, 302);
  t.match(String(res.headers['set-cookie']), /; Secure/);
});

t.test('a callback completed in another browser connects nothing and spends nothing: the browser that started still finishes', async (t) => {
  const { user, token } = await newUser('other-browser');
  const p = patientOf(NV);
  const mine = new Browser();
  const callback = await signIn(t, connectUrl(NV.directoryId, token), p.username, p.password, 'approve', mine);
  t.ok(mine.cookie('trb_connect'), 'the browser that started holds the connect cookie');

  // Another browser: without the cookie, and with a connect cookie of its own.
  const other = new Browser();
  const noCookie = await other.get(callback.toString());
  t.equal(noCookie.status, 400);
  t.match(await noCookie.text(), /started in another browser.*Finish in the browser where you started/s);
  const { token: otherToken } = await newUser('other-browser-2');
  await other.get(connectUrl(LS.directoryId, otherToken));
  t.ok(
    other.cookie('trb_connect') && other.cookie('trb_connect') !== mine.cookie('trb_connect'),
    'the other browser has a connect cookie of its own',
  );
  const wrongCookie = await other.get(callback.toString());
  t.equal(wrongCookie.status, 400, "another browser's cookie does not open it");
  t.equal(await connectionsOf(user.id), 0, 'nothing was stored');

  const back = location(await mine.get(callback.toString()));
  t.equal(back.searchParams.get('success'), 'true', 'the same link, in the browser that started, connects');
  t.equal(await connectionsOf(user.id), 1);
});

t.test('several sign-ins under way in one browser each finish', async (t) => {
  const one = new Browser();
  const a = await newUser('parallel-a');
  const b = await newUser('parallel-b');
  const callbackA = await signIn(t, connectUrl(NV.directoryId, a.token, 'a'), patientOf(NV).username, patientOf(NV).password, 'approve', one);
  const callbackB = await signIn(t, connectUrl(LS.directoryId, b.token, 'b'), patientOf(LS).username, patientOf(LS).password, 'approve', one);
  // Finished in the other order than they were started.
  t.same(Object.fromEntries(location(await one.get(callbackB.toString())).searchParams), { success: 'true', system_id: LS.directoryId, state: 'b' });
  t.same(Object.fromEntries(location(await one.get(callbackA.toString())).searchParams), { success: 'true', system_id: NV.directoryId, state: 'a' });
  t.same([await connectionsOf(a.user.id), await connectionsOf(b.user.id)], [1, 1]);
});

t.test('without an encryption key (DATABASE_URL, no ENCRYPTION_KEY): said once at start, and refused at the connect URL', async (t) => {
  const lines: string[] = [];
  const stream = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
  const keyless = await buildApp(testConfig(app.config.databaseUrl!, { baseUrl: BASE, encryptionKey: undefined }), {
    logger: { level: 'warn', stream },
  });
  t.teardown(() => keyless.close());
  await keyless.ready();
  const warned = lines.map((l) => JSON.parse(l)).filter((l) => l.level === 40 && /ENCRYPTION_KEY/.test(l.msg));
  t.equal(
    warned.filter((l) => /connect/.test(l.msg)).length,
    1,
    `one warning line at start names ENCRYPTION_KEY (${warned.map((l) => l.msg).join(' | ')})`,
  );

  const { user, token } = await newUser('keyless');
  const before = (await app.pg.query('SELECT count(*)::int AS n FROM trb_connect_state')).rows[0].n;
  const res = await keyless.inject({ url: `/connect/system/clinical/${LS.directoryId}?client_id=${demo.clientId}&access_token=${token}&state=k` });
  t.equal(res.statusCode, 302);
  const u = new URL(String(res.headers.location));
  t.equal(`${u.origin}${u.pathname}`, APP_CALLBACK, 'back to the app, not on to the health system');
  t.same([u.searchParams.get('error'), u.searchParams.get('state')], ['server_error', 'k']);
  t.match(u.searchParams.get('error_description'), /operator sets ENCRYPTION_KEY/);
  t.equal((await app.pg.query('SELECT count(*)::int AS n FROM trb_connect_state')).rows[0].n, before, 'no sign-in begun');
  t.equal(await connectionsOf(user.id), 0);
});

t.test('a vendor-wide registration is sent only to the hosts it names', async (t) => {
  // A directory entry of the vendor pointing at a server of someone else's, which records what it is sent.
  const seen: { method: string; url: string; body: string }[] = [];
  const elsewhere = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, body: `${body} ${req.headers.authorization ?? ''}` });
      const base = `http://127.0.0.1:${(elsewhere.address() as { port: number }).port}`;
      if (req.url === '/fhir/.well-known/smart-configuration')
        return res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ authorization_endpoint: `${base}/authorize`, token_endpoint: `${base}/token` }));
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request"}');
    });
  });
  await new Promise<void>((r) => elsewhere.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => elsewhere.close(() => r())));
  const imported = await importDirectory(
    app.pg,
    [
      {
        name: 'acme.csv',
        vendor: 'Acme EHR',
        content: `id,url,name\nacme-elsewhere,http://127.0.0.1:${(elsewhere.address() as { port: number }).port}/fhir,Acme Elsewhere\n`,
      },
    ],
    undefined,
    { allow: ['127.0.0.1'] },
  );
  t.equal(imported.added, 1, JSON.stringify(imported.rejected));
  await saveRegistration(app.pg, app.vault, {
    vendor: 'Acme EHR',
    clientId: 'acme-client',
    authMethod: 'client_secret_post',
    secret: 'acme-vendor-secret',
    hosts: ['fhir.acme.example', '*.acme.example'],
  });

  const { token } = await newUser('vendor-1');
  const refused = location(await get(connectUrl('acme-elsewhere', token)));
  t.equal(`${refused.origin}${refused.pathname}`, APP_CALLBACK);
  t.equal(refused.searchParams.get('error'), 'unauthorized_client');
  t.match(
    refused.searchParams.get('error_description'),
    /not at a host that Tributary's registration for Acme EHR may be used at, so nothing was sent/,
  );
  // The sync builds its client the same way (clientForSystem): refused too.
  const acme = {
    id: 'acme-elsewhere',
    name: 'acme-elsewhere',
    resource_url: `http://127.0.0.1:${(elsewhere.address() as { port: number }).port}/fhir`,
    vendor: 'Acme EHR',
  };
  await t.rejects(
    clientForSystem(app.pg, app.vault, acme, BASE, () => app.clientKeys.load(), app.outbound.fetch, app.discovery),
    { code: 'unauthorized_client' },
  );
  // And a sync of a connection to it (as if made before the registration changed) fails, sending nothing.
  const held = await newUser('vendor-sync');
  const key = connectionSealKey(held.user.id, 'acme-elsewhere');
  const { rows: conn } = await app.pg.query<{ id: string }>(
    `INSERT INTO trb_connection (app_id, user_id, system_id, patient_id, scope, access_token_sealed, refresh_token_sealed, access_expires_at)
     VALUES ($1, $2, 'acme-elsewhere', 'p1', 'patient/*.read', $3, $4, now() - interval '1 minute') RETURNING id::text`,
    [
      demo.id,
      held.user.id,
      app.vault.encrypt('held-access-token', key, 'connection-token'),
      app.vault.encrypt('held-refresh-token', key, 'connection-token'),
    ],
  );
  const run = await syncConnection(syncDeps(app), conn[0].id);
  t.equal(run.status, 'failed');
  t.match(run.error, /not at a host that Tributary's registration for Acme EHR may be used at/);
  t.same(
    [...new Set(seen.map((r) => `${r.method} ${r.url}`))],
    ['GET /fhir/.well-known/smart-configuration'],
    'only discovery was read: no token request, no refresh, no FHIR read',
  );
  t.notOk(
    seen.some((r) => ['acme-vendor-secret', 'acme-client', 'held-'].some((s) => r.body.includes(s))),
    'neither the secret, the client id nor a token was sent',
  );
  t.equal((await app.pg.query("SELECT count(*)::int AS n FROM trb_connect_state WHERE system_id = 'acme-elsewhere'")).rows[0].n, 0);

  // Allowed: Lakeside, for a while a system of a vendor whose registration names its host, connects.
  const vendor = (await app.pg.query('SELECT vendor FROM trb_system WHERE id = $1', [LS.directoryId])).rows[0].vendor;
  await app.pg.query('DELETE FROM trb_client_registration WHERE system_id = $1', [LS.directoryId]);
  await app.pg.query("UPDATE trb_system SET vendor = 'Lake EHR' WHERE id = $1", [LS.directoryId]);
  t.teardown(async () => {
    await app.pg.query('UPDATE trb_system SET vendor = $2 WHERE id = $1', [LS.directoryId, vendor]);
    await saveRegistration(app.pg, app.vault, { systemId: LS.directoryId, clientId: LS.clientId, authMethod: 'none' });
  });
  await saveRegistration(app.pg, app.vault, { vendor: 'Lake EHR', clientId: LS.clientId, authMethod: 'none', hosts: ['127.0.0.1'] });
  const lake = await newUser('vendor-2');
  const back = location(
    await get((await signIn(t, connectUrl(LS.directoryId, lake.token), patientOf(LS).username, patientOf(LS).password)).toString()),
  );
  t.equal(back.searchParams.get('success'), 'true', `allowed host: connected (${back.searchParams.get('error_description') ?? ''})`);

  // A vendor-wide registration made before hosts existed (migration 0015 keeps it, NOT VALID) is not used.
  await app.pg.query('ALTER TABLE trb_client_registration DROP CONSTRAINT trb_client_registration_vendor_hosts');
  await app.pg.query("UPDATE trb_client_registration SET hosts = NULL WHERE vendor = 'Lake EHR'");
  await app.pg.query(
    'ALTER TABLE trb_client_registration ADD CONSTRAINT trb_client_registration_vendor_hosts CHECK (vendor IS NULL OR coalesce(cardinality(hosts), 0) > 0) NOT VALID',
  );
  const legacy = location(await get(connectUrl(LS.directoryId, (await newUser('vendor-3')).token)));
  t.equal(legacy.searchParams.get('error'), 'unauthorized_client');
  t.match(legacy.searchParams.get('error_description'), /names no hosts it may be used at, so it is not used/);

  // Wildcards: any host under the domain, never the domain itself or a look-alike.
  t.same(
    ['fhir.acme.example', 'a.b.acme.example', 'acme.example', 'evilacme.example', 'acme.example.evil.test', 'FHIR.ACME.EXAMPLE'].map((h) =>
      hostAllowed(h, ['*.acme.example']),
    ),
    [true, true, false, false, false, true],
  );
  t.equal(hostAllowed('fhir.acme.example', ['fhir.acme.example']), true);
  t.equal(hostAllowed('other.acme.example', ['fhir.acme.example']), false);
});

t.test("the connections API takes the app's user token only: a SMART token with narrow scopes gets a 403 and changes nothing", async (t) => {
  const { user, token } = await newUser('narrow');
  t.equal(
    location(
      await get((await signIn(t, connectUrl(LS.directoryId, token), patientOf(LS).username, patientOf(LS).password)).toString()),
    ).searchParams.get('success'),
    'true',
  );
  const id = (await app.pg.query<{ id: string }>('SELECT id::text FROM trb_connection WHERE user_id = $1', [user.id])).rows[0].id;
  // The same user's token from a SMART sign-in (PKCE) that granted patient/Observation.rs only.
  const verifier = oauth.generateRandomCodeVerifier();
  const code = await app.auth.newCode(demo.id, user.id, 'launch/patient patient/Observation.rs', {
    redirectUri: APP_CALLBACK,
    codeChallenge: await oauth.calculatePKCECodeChallenge(verifier),
    nonce: null,
    patientId: null,
  });
  const narrow = (await app.auth.exchangeCode(demo, code, { redirectUri: APP_CALLBACK, codeVerifier: verifier })).access_token;
  const call = (method: string, path: string, bearer: string) =>
    fetch(`${BASE}/connect/connections${path}`, { method, headers: { authorization: `Bearer ${bearer}` } });
  for (const [method, path] of [
    ['GET', ''],
    ['GET', `/${id}/runs`],
    ['DELETE', `/${id}?purge=true`],
    ['DELETE', `/${id}`],
  ]) {
    const res = await call(method, path, narrow);
    t.equal(res.status, 403, `${method} ${path}`);
    t.match(res.headers.get('www-authenticate'), /insufficient_scope/);
    const body = await res.json();
    t.same([body.success, typeof body.error], [false, 'string']);
    t.match(body.error, /user-management API/);
  }
  t.equal(await connectionsOf(user.id), 1, 'still connected');
  t.equal((await call('GET', '', token)).status, 200, "the app's user token lists");
  t.equal((await call('GET', `/${id}/runs`, token)).status, 200, 'and reads the runs');
});
