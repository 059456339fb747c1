/**
 * Subscriptions hear of what the sync brings, over real HTTP, with the server's own workers and a
 * sandbox system: a user's subscription made before they connect hears of every Observation the
 * first sync imports, within that cycle; a change at the source comes as a notification in the
 * next cycle; another user's records, synced beside, never reach it; the app's own subscription
 * hears of both.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { buildApp } from '../../src/app.ts';
import { generateSystem } from '../../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES } from '../../src/sandbox/systems.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';
import { get, signIn } from './connect-support.ts';

const DEFS = DEFAULT_SANDBOXES.map((d) => ({ ...d, patients: 2 }));
const [NV] = DEFS;
const port = await freePort();
const BASE = `http://127.0.0.1:${port}`;
const ADMIN_KEY = 'k'.repeat(40);
const app = await buildApp(
  testConfig(await testDatabase(t), {
    baseUrl: BASE,
    sandboxes: true,
    sandboxSystems: DEFS,
    fhirAuth: 'required',
    adminKey: ADMIN_KEY,
    syncWorkers: true,
    syncCheckpointMarginSeconds: 0,
  }),
  { logger: false },
);
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());
await app.sandboxesLoaded;
const people = generateSystem({ seed: NV.seed, patients: NV.patients, idPrefix: NV.idPrefix, systemName: NV.title }).patients.filter(
  (p) => p.personKey !== 'shared',
);
const { app: demo, clientSecret } = await app.auth.createApp({ name: 'Watcher', redirectUris: ['https://app.example/cb'] });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitFor<T>(what: () => T | Promise<T>, ms = 30_000): Promise<T> {
  const until = Date.now() + ms;
  let v = await what();
  while (!v && Date.now() < until) {
    await sleep(50);
    v = await what();
  }
  return v;
}

async function receiver(t: Test) {
  const got: { url: string; at: number }[] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      got.push({ url: req.url!, at: Date.now() });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`, got };
}

const fhir = async (headers: Record<string, string>, path: string, init: { method?: string; body?: object } = {}) => {
  const res = await fetch(`${BASE}/fhir/r4/${path}`, {
    method: init.method ?? 'GET',
    headers: { ...headers, ...(init.body ? { 'content-type': 'application/fhir+json' } : {}) },
    body: init.body && JSON.stringify(init.body),
  });
  return res.json();
};
const subscribe = async (headers: Record<string, string>, endpoint: string) => {
  const sub = await fhir(headers, 'Subscription', {
    method: 'POST',
    body: {
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'new records',
      criteria: 'Observation',
      channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json' },
    },
  });
  return waitFor(async () => (await fhir(headers, `Subscription/${sub.id}`)).status === 'active');
};
const runsDone = async (connectionId: string) =>
  Number(
    (
      await app.pg.query("SELECT count(*) FROM trb_sync_run WHERE connection_id = $1 AND finished_at IS NOT NULL AND status = 'succeeded'", [
        connectionId,
      ])
    ).rows[0].count,
  );
const observationIds = async (headers: Record<string, string>) => {
  const ids: string[] = [];
  let bundle = await fhir(headers, 'Observation?_count=1000&_elements=id');
  for (;;) {
    ids.push(...(bundle.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id));
    const next = bundle.link?.find((l: { relation: string }) => l.relation === 'next')?.url;
    if (!next) return ids;
    bundle = await (await fetch(next, { headers })).json();
  }
};

t.test('the sync brings new records: the user subscription hears of each within the cycle, and of nobody else', async (t) => {
  const forA = await receiver(t);
  const forApp = await receiver(t);
  const asApp = { client_id: demo.clientId, client_secret: clientSecret, 'x-oneup-user-id': 'client' };
  t.ok(await subscribe(asApp, forApp.url), "the app's subscription is active");
  const users: { user: { id: string }; person: (typeof people)[number]; token: string; headers: Record<string, string> }[] = [];
  for (const [i, person] of people.slice(0, 2).entries()) {
    const user = (await app.auth.createUser(demo.id, `watch-${i}`))!;
    const { access_token } = await app.auth.exchangeCode(demo, await app.auth.newCode(demo.id, user.id));
    users.push({ user, person, token: access_token, headers: { authorization: `Bearer ${access_token}` } });
  }
  const [a, b] = users;
  t.ok(await subscribe(a.headers, forA.url), "user A's subscription is active before A connects");
  const connectionOf = async (u: (typeof users)[number]) => {
    const callback = await signIn(
      t,
      BASE,
      `${BASE}/connect/system/clinical/${NV.directoryId}?client_id=${demo.clientId}&access_token=${u.token}`,
      u.person.username,
      u.person.password,
    );
    await get(callback.toString());
    return (await app.pg.query<{ id: string }>('SELECT id::text FROM trb_connection WHERE user_id = $1', [u.user.id])).rows[0].id;
  };
  // Connecting queues the first sync, which the workers run: the cycle.
  const ca = await connectionOf(a);
  const cb = await connectionOf(b);
  t.ok(await waitFor(async () => (await runsDone(ca)) >= 1 && (await runsDone(cb)) >= 1), 'both first syncs ran');
  const synced = Date.now();
  const aIds = await observationIds(a.headers);
  const bIds = await observationIds(b.headers);
  t.ok(aIds.length > 5 && bIds.length > 5, `Observations imported (${aIds.length} and ${bIds.length})`);
  t.ok(await waitFor(() => forA.got.length >= aIds.length, 10_000), "every one of A's Observations notified");
  const heard = new Set(forA.got.map((g) => g.url.split('/').pop()));
  t.same([...heard].sort(), [...aIds].sort(), "A's subscription heard of A's Observations, each, and of no one else's");
  t.ok(forA.got.at(-1)!.at - synced < 5000, 'within the cycle (seconds after the run, not the next one)');
  t.ok(await waitFor(() => forApp.got.length >= aIds.length + bIds.length, 10_000), "the app's subscription heard of both users'");

  const before = forA.got.length;
  const changed = await fetch(`${BASE}/admin/sandbox/${NV.name}/records`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ username: a.person.username, type: 'Observation', action: 'change', count: 2 }),
  });
  t.equal(changed.status, 200, 'two Observations changed at the source');
  await fetch(`${BASE}/admin/sync`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  t.ok(await waitFor(async () => (await runsDone(ca)) >= 2), 'the next sync ran');
  t.ok(await waitFor(() => forA.got.length >= before + 2, 10_000), 'the two changes notified in that cycle');
  await sleep(500);
  t.equal(forA.got.length, before + 2, 'and nothing else');
});
