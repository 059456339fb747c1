/**
 * Webhooks in the Standard Webhooks format, over real HTTP, with the sync workers of the server and
 * a sandbox system: the server issues the secret (an app's own is refused, GET never shows it, a new
 * PUT rotates it and the old one signs beside it); plain http only to loopback or when allowed; the
 * receivers verify every event with the `standardwebhooks` library, as an app would; a refused
 * delivery comes again with the same webhook-id, and a redirect is a refusal, not followed; a run
 * that found nothing new sends nothing; a failed run sends sync.failed; one app's receiver that
 * hangs holds its own share of the deliveries, and another app's event arrives within a second.
 */
import http from 'node:http';
import t, { type Test } from 'tap';
import { Webhook } from 'standardwebhooks';
import { buildApp } from '../../src/app.ts';
import { generateSystem } from '../../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES } from '../../src/sandbox/systems.ts';
import { newSecret, queueEvent } from '../../src/sync/webhooks.ts';
import { buildTestApp, testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';
import { get, signIn } from './connect-support.ts';

const DEFS = DEFAULT_SANDBOXES.map((d) => ({ ...d, patients: 3 }));
const [NV] = DEFS;
const port = await freePort();
const BASE = `http://127.0.0.1:${port}`;
const ADMIN_KEY = 'k'.repeat(40);
// 8 deliveries at once: one app's receiver holds at most 2 of them.
const app = await buildApp(
  testConfig(await testDatabase(t), {
    baseUrl: BASE,
    sandboxes: true,
    sandboxSystems: DEFS,
    fhirAuth: 'required',
    adminKey: ADMIN_KEY,
    syncWorkers: true,
    webhookConcurrency: 8,
  }),
  { logger: false },
);
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());
await app.sandboxesLoaded;
const root = t;
const people = generateSystem({ seed: NV.seed, patients: NV.patients, idPrefix: NV.idPrefix, systemName: NV.title }).patients.filter(
  (p) => p.personKey !== 'shared',
);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitFor<T>(what: () => T | Promise<T>, ms = 20_000): Promise<T> {
  const until = Date.now() + ms;
  let v = await what();
  while (!v && Date.now() < until) {
    await sleep(50);
    v = await what();
  }
  return v;
}

interface Received {
  headers: Record<string, string>;
  body: string;
  at: number;
}

/** A receiver on loopback: records each request and answers with `answer`'s status, or never. */
async function receiver(t: Test, answer: (n: number) => number | 'hang' = () => 200) {
  const got: Received[] = [];
  let open = 0;
  let mostOpen = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req
      .on('data', (d) => (body += d))
      .on('end', () => {
        got.push({ headers: req.headers as Record<string, string>, body, at: Date.now() });
        const a = answer(got.length);
        if (a !== 'hang') return void res.writeHead(a).end();
        mostOpen = Math.max(mostOpen, ++open);
        res.on('close', () => open--);
      });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`, got, mostOpen: () => mostOpen };
}

const newApp = (name: string) => app.auth.createApp({ name, redirectUris: ['https://app.example/cb'] });
type AppOf = Awaited<ReturnType<typeof newApp>>;
const putHook = (a: AppOf, fields: Record<string, string>, base = BASE) =>
  fetch(`${base}/connect/webhook`, {
    method: 'PUT',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: a.app.clientId, client_secret: a.clientSecret, ...fields }),
  });

/** A user of the app connected to North Valley as `person`: the first sync is queued as they connect. */
async function connected(t: Test, a: AppOf, name: string, person: (typeof people)[number]) {
  const user = (await app.auth.createUser(a.app.id, name))!;
  const { access_token } = await app.auth.exchangeCode(a.app, await app.auth.newCode(a.app.id, user.id));
  const callback = await signIn(
    t,
    BASE,
    `${BASE}/connect/system/clinical/${NV.directoryId}?client_id=${a.app.clientId}&access_token=${access_token}`,
    person.username,
    person.password,
  );
  await get(callback.toString());
  const { rows } = await app.pg.query<{ id: string }>('SELECT id::text FROM trb_connection WHERE user_id = $1', [user.id]);
  return rows[0].id;
}
/** How many sync jobs of the connection pg-boss has completed (the run's event is queued before). */
// Runs that finished (a sync job is completed as its run starts: src/sync/run.ts, onLocked).
const syncsDone = async (connectionId: string) =>
  Number(
    (
      await app.pg.query("SELECT count(*) FROM trb_sync_run WHERE connection_id = $1 AND finished_at IS NOT NULL AND status <> 'skipped'", [
        connectionId,
      ])
    ).rows[0].count,
  );
const webhookJobs = async () => Number((await app.pg.query("SELECT count(*) FROM pgboss.job WHERE name = 'webhook'")).rows[0].count);

t.test('PUT /connect/webhook issues the secret, shown once; an app cannot choose its own; a new PUT rotates it', async (t) => {
  const a = await newApp('Secrets');
  const own = await putHook(a, { url: 'https://hooks.example/in', secret: 'my-own-secret-0123456789' });
  t.equal(own.status, 400);
  t.match(await own.json(), { success: false, error: /server issues the secret/ });
  t.equal((await app.pg.query('SELECT count(*)::int AS n FROM trb_webhook WHERE app_id = $1', [a.app.id])).rows[0].n, 0, 'nothing stored');

  const first = await putHook(a, { url: 'https://hooks.example/in' });
  t.equal(first.status, 200);
  t.equal(first.headers.get('cache-control'), 'no-store');
  const one = await first.json();
  t.match(one, { success: true, url: 'https://hooks.example/in', secret: /^whsec_[A-Za-z0-9+/]+={0,2}$/, previous_secret_until: null });
  t.equal(Buffer.from(one.secret.slice(6), 'base64').length, 32, '32 random bytes');
  const second = await (await putHook(a, { url: 'https://hooks.example/v2' })).json();
  t.not(second.secret, one.secret, 'a new secret on each PUT');
  const until = Date.parse(second.previous_secret_until) - Date.now();
  t.ok(until > 23.9 * 3600_000 && until <= 24 * 3600_000, 'the replaced one signs beside it for 24 hours');

  const shown = await fetch(`${BASE}/connect/webhook`, { headers: { client_id: a.app.clientId, client_secret: a.clientSecret } });
  const text = await shown.text();
  t.match(JSON.parse(text), { success: true, url: 'https://hooks.example/v2', created_at: String, previous_secret_until: String });
  t.notOk(text.includes(second.secret.slice(6)) || text.includes(one.secret.slice(6)), 'GET never shows a secret');
  t.equal((await putHook({ ...a, clientSecret: 'wrong' }, { url: 'https://hooks.example/in' })).status, 401);
});

t.test('a webhook URL is https, or http to a loopback host, or http anywhere when WEBHOOK_ALLOW_HTTP allows it', async (t) => {
  const a = await newApp('URLs');
  for (const url of [
    'http://hooks.example/in',
    'http://10.0.0.5/in',
    'http://192.168.1.2:8080/in',
    'http://127.0.0.1.nip.io/in',
    'ftp://hooks.example/in',
    'not a url',
    '',
  ]) {
    const res = await putHook(a, { url });
    t.equal(res.status, 400, `${url || '(empty)'}: refused`);
    t.match(await res.json(), { success: false, error: /https/ });
  }
  for (const url of [
    'http://127.0.0.1:9/in',
    'http://localhost:9/in',
    'http://[::1]:9/in',
    'http://hooks.localhost/in',
    'https://hooks.example/in',
  ]) {
    t.equal((await putHook(a, { url })).status, 200, `${url}: accepted`);
  }
  t.match(await (await putHook(a, { url: 'https://user:pw@hooks.example/in' })).json(), { success: false, error: /user name or password/ });

  const open = await buildTestApp(t, { webhookAllowHttp: true });
  const b = await open.auth.createApp({ name: 'Private network' });
  const res = await open.inject({
    method: 'PUT',
    url: '/connect/webhook',
    payload: { client_id: b.app.clientId, client_secret: b.clientSecret, url: 'http://hooks.internal/in' },
  });
  t.equal(res.statusCode, 200, 'WEBHOOK_ALLOW_HTTP=true: plain http to any host');
});

let demo: AppOf;
let secret: string;
let hook: Awaited<ReturnType<typeof receiver>>;
let connection: string;
t.test('the first sync is announced, verified as a receiver would; a refused delivery comes again with the same webhook-id', async (t) => {
  demo = await newApp('Webhook app');
  // The first delivery is refused (500): pg-boss tries it again a second later. The receiver serves
  // the tests that follow too.
  hook = await receiver(root, (n) => (n === 1 ? 500 : 200));
  const set = await (await putHook(demo, { url: hook.url })).json();
  secret = set.secret;
  connection = await connected(t, demo, 'hook-a', people[0]);
  t.ok(await waitFor(() => hook.got.length >= 2), 'delivered twice: refused, then taken');
  const [refused, taken] = hook.got;
  t.match(taken.headers['webhook-id'], /^msg_[0-9a-f]{32}$/);
  t.equal(refused.headers['webhook-id'], taken.headers['webhook-id'], 'the same webhook-id on the retry');
  t.match(taken.headers['webhook-signature'], /^v1,[A-Za-z0-9+/]+={0,2}$/, 'one signature: no secret was replaced');
  const event = new Webhook(secret).verify(taken.body, taken.headers) as { type: string; timestamp: string; data: Record<string, unknown> };
  t.match(event, {
    type: 'sync.succeeded',
    timestamp: String,
    data: { connection_id: connection, app_user_id: 'hook-a', system_id: NV.directoryId, run: { status: 'succeeded' } },
  });
  t.ok((event.data.run as { created: number }).created > 0, 'the run created records');
  t.ok(Math.abs(Number(taken.headers['webhook-timestamp']) - Date.now() / 1000) < 10, 'webhook-timestamp: the attempt, now');
  t.throws(() => new Webhook(newSecret()).verify(taken.body, taken.headers), 'another secret does not verify');
  t.throws(() => new Webhook(secret).verify(taken.body.replace('succeeded', 'failed'), taken.headers), 'a changed body does not verify');
});

t.test('a run that finds nothing new sends nothing', async (t) => {
  const events = await webhookJobs();
  const received = hook.got.length;
  await app.queueSync(connection);
  t.ok(await waitFor(async () => (await syncsDone(connection)) >= 2), 'the second sync ran');
  const run = (
    await app.pg.query('SELECT created, updated, status FROM trb_sync_run WHERE connection_id = $1 ORDER BY started_at DESC LIMIT 1', [connection])
  ).rows[0];
  t.same(run, { created: 0, updated: 0, status: 'succeeded' }, 'it found nothing new');
  t.equal(await webhookJobs(), events, 'no event queued');
  await sleep(1500);
  t.equal(hook.got.length, received, 'and none delivered');
});

t.test('a failed run sends sync.failed; after a rotation both secrets sign it', async (t) => {
  const rotated = await (await putHook(demo, { url: hook.url })).json();
  const received = hook.got.length;
  // Every request to North Valley answers 429 (Retry-After: 0) until the sync gives up.
  const faults = (body?: object) =>
    fetch(`${BASE}/admin/sandbox/${NV.name}/faults`, {
      method: body ? 'PUT' : 'DELETE',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body && JSON.stringify(body),
    });
  t.equal((await faults({ fail: { count: 50, status: 429, retryAfter: 0 } })).status, 200);
  t.teardown(() => faults());
  // A full fetch is due (the run before may have been one that asks nothing: src/sync/run.ts, modes).
  await app.pg.query('UPDATE trb_sync_type SET last_full_at = NULL WHERE connection_id = $1', [connection]);
  await app.queueSync(connection);
  t.ok(await waitFor(() => hook.got.length > received), 'an event arrived');
  const got = hook.got[received];
  const event = new Webhook(rotated.secret).verify(got.body, got.headers);
  t.match(event, { type: 'sync.failed', data: { connection_id: connection, run: { status: 'failed', error: String } } });
  t.equal(got.headers['webhook-signature'].split(' ').length, 2, 'two signatures: the new secret and the replaced one');
  t.same(new Webhook(secret).verify(got.body, got.headers), event, 'a receiver still on the replaced secret takes it too');
});

t.test('a redirect is not followed: it counts as a refusal, and the event comes again to the same URL', async (t) => {
  const a = await newApp('Redirecting receiver');
  const elsewhere = await receiver(t);
  let hits = 0;
  const redirecting = http.createServer((req, res) => {
    req.resume().on('end', () => {
      hits++;
      res.writeHead(307, { location: elsewhere.url }).end();
    });
  });
  await new Promise<void>((r) => redirecting.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => redirecting.close(() => r())));
  t.equal((await putHook(a, { url: `http://127.0.0.1:${(redirecting.address() as { port: number }).port}/hook` })).status, 200);
  await queueEvent(app.jobs, a.app.id, 'sync.succeeded', {});
  t.ok(await waitFor(() => hits >= 2), 'tried again after the redirect');
  t.equal(elsewhere.got.length, 0, 'the redirect target never hears of it');
});

t.test("one app's receiver hangs: it holds 2 of the 8 deliveries, and another app's event arrives within a second", async (t) => {
  const slow = await newApp('Slow receiver');
  const hanging = await receiver(t, () => 'hang');
  t.equal((await putHook(slow, { url: hanging.url })).status, 200);
  const fast = await newApp('Fast receiver');
  const quick = await receiver(t);
  const fastSecret = (await (await putHook(fast, { url: quick.url })).json()).secret;

  // More events for the slow app than there are deliveries at once.
  for (let i = 0; i < 20; i++) await queueEvent(app.jobs, slow.app.id, 'sync.succeeded', { n: i });
  t.ok(await waitFor(() => hanging.got.length >= 2), 'the slow receiver has its share');
  const c = await connected(t, fast, 'hook-fast', people[1]);
  t.ok(await waitFor(() => quick.got.length >= 1), "the other app's event arrived");
  const { finished_at } = (await app.pg.query('SELECT finished_at FROM trb_sync_run WHERE connection_id = $1', [c])).rows[0];
  const ms = quick.got[0].at - finished_at.getTime();
  t.ok(ms < 1000, `within a second of its run (${ms} ms)`);
  t.match(new Webhook(fastSecret).verify(quick.got[0].body, quick.got[0].headers), { type: 'sync.succeeded', data: { connection_id: c } });
  t.equal(hanging.mostOpen(), 2, 'the hanging receiver never held more than its share (8 / 4)');
});
