/**
 * The sync against a sandbox system, over real HTTP: a connected user's first sync imports the
 * patient's whole record (exact counts per type) with local ids, rewritten references, meta.source
 * and the source tag, and a Provenance per page stored; the records answer FHIR search with the
 * user's token, narrowed by `_source` and `_tag`; a second sync makes no version; a change at the
 * source comes in as a new version; a malformed resource is recorded and skipped; an expired access
 * token is refreshed; a revoked refresh token ends in needs_reauth; two users never see each other's
 * records; a worker killed mid-sync keeps the pages it stored, and the next run goes on from them.
 * The checkpoint margin is 0 here (the sandbox's records were all written a moment ago: with the
 * default 5 minutes, every increment would take them all again, to no version); its effect is
 * tested on its own.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import t, { type Test } from 'tap';
import { Webhook } from 'standardwebhooks';
import type { Resource } from '@medplum/fhirtypes';
import { buildApp } from '../../src/app.ts';
import { generateSystem, STEPS_LOINC } from '../../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES } from '../../src/sandbox/systems.ts';
import { createSystemLimiter } from '../../src/sync/rate-limit.ts';
import { syncConnection, type SyncDeps } from '../../src/sync/run.ts';
import { SOURCE_TAG_SYSTEM } from '../../src/sync/mapper.ts';
import { syncDeps } from '../../plugins/sync.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';
import { get, signIn } from './connect-support.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
const DEFS = DEFAULT_SANDBOXES.map((d) => ({ ...d, patients: 2 }));
const [NV, LS] = DEFS;
const port = await freePort();
const BASE = `http://127.0.0.1:${port}`;
const ADMIN_KEY = 'k'.repeat(40);
const app = await buildApp(
  testConfig(await testDatabase(t), { baseUrl: BASE, sandboxes: true, sandboxSystems: DEFS, fhirAuth: 'required', adminKey: ADMIN_KEY }),
  { logger: false },
);
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());
await app.sandboxesLoaded;
const NV_BASE = `${BASE}/sandbox/${NV.name}/fhir/r4`;
const patientsOf = (d: typeof NV) =>
  generateSystem({ seed: d.seed, patients: d.patients, idPrefix: d.idPrefix, systemName: d.title }).patients.filter((p) => p.personKey !== 'shared');
const people = patientsOf(NV);

// Short backoffs, for a quick test; checkpoints without a margin (above).
const deps: SyncDeps = {
  ...syncDeps(app),
  session: { attempts: 4, backoffMs: 20, timeoutMs: 10_000, concurrency: 4, ratePerSecond: 1000 },
  limiter: createSystemLimiter(app.pg, { ratePerSecond: 1000 }),
  policy: { checkpointMarginSeconds: 0, sweepHours: 24, fullMinutes: 60 },
};
const { app: demo, clientSecret: demoSecret } = await app.auth.createApp({ name: 'Sync app', redirectUris: ['https://app.example/cb'] });

/** A user of the app connected to a system (North Valley unless named) as `person`; their token and connection id. */
async function connected(t: Test, name: string, person: (typeof people)[number], system = NV) {
  const user = (await app.auth.createUser(demo.id, name))!;
  const { access_token } = await app.auth.exchangeCode(demo, await app.auth.newCode(demo.id, user.id));
  const callback = await signIn(
    t,
    BASE,
    `${BASE}/connect/system/clinical/${system.directoryId}?client_id=${demo.clientId}&access_token=${access_token}`,
    person.username,
    person.password,
  );
  await get(callback.toString());
  const { rows } = await app.pg.query<{ id: string }>('SELECT id::text FROM trb_connection WHERE user_id = $1', [user.id]);
  return { token: access_token, connectionId: rows[0].id, userId: user.id };
}

const search = async (token: string, query: string) =>
  (await fetch(`${BASE}/fhir/r4/${query}`, { headers: { authorization: `Bearer ${token}` } })).json();
const countOf = async (token: string, query: string) =>
  (await search(token, `${query}${query.includes('?') ? '&' : '?'}_summary=count`)).total as number;
const versions = async () => Number(await app.pg.query('SELECT count(*) AS n FROM hfj_res_ver').then((r) => r.rows[0].n));
const admin = (path: string, body?: object, system = NV) =>
  fetch(`${BASE}/admin/sandbox/${system.name}/${path}`, {
    method: body ? 'PUT' : 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body && JSON.stringify(body),
  });

let a: Awaited<ReturnType<typeof connected>>;
let b: Awaited<ReturnType<typeof connected>>;
t.test('two users of the app connect to North Valley, as two of its patients', async (t) => {
  a = await connected(t, 'sync-a', people[0]);
  b = await connected(t, 'sync-b', people[1]);
});

t.test('the first sync imports the whole record, exactly, with its provenance', async (t) => {
  const run = await syncConnection(deps, a.connectionId);
  t.equal(run.status, 'succeeded', run.error ?? 'succeeded');
  const source = people[0].resources;
  const outside = new Set(source.flatMap((r) => JSON.stringify(r).match(/"(Practitioner|Organization|Location)\/[^"]+"/g) ?? []));
  t.equal(run.fetched, source.length + outside.size, 'every resource of the patient, and what they reference outside');
  t.same([run.created, run.updated, run.failed], [run.fetched, 0, 0]);
  t.equal(run.strategy, 'everything', 'North Valley serves Patient/$everything, so the sync asks for it');
  t.ok(run.requests < 25, `a few pages of $everything, with what they reference included (${run.requests} requests)`);
  for (const type of [
    'Observation',
    'Condition',
    'Encounter',
    'MedicationRequest',
    'Immunization',
    'DiagnosticReport',
    'DocumentReference',
    'AllergyIntolerance',
    'Procedure',
  ]) {
    t.equal(await countOf(a.token, type), source.filter((r) => r.resourceType === type).length, `${type}: as many as the source has`);
  }
  const steps = source.filter((r) => r.resourceType === 'Observation' && JSON.stringify(r).includes(`"${STEPS_LOINC}"`)).length;
  t.equal(await countOf(a.token, `Observation?code=http://loinc.org|${STEPS_LOINC}`), steps, "the README's example finds the steps");
  t.equal(
    await countOf(a.token, `Observation?_source=${encodeURIComponent(NV_BASE)}`),
    source.filter((r) => r.resourceType === 'Observation').length,
    '_source narrows to the system',
  );
  t.equal(
    await countOf(a.token, `Observation?_tag=${encodeURIComponent(`${SOURCE_TAG_SYSTEM}|${NV.directoryId}`)}`),
    source.filter((r) => r.resourceType === 'Observation').length,
    '_tag narrows to the system',
  );

  const obs = (await search(a.token, 'Observation?_count=1&encounter:missing=false')).entry[0].resource;
  t.match(obs.meta, { source: NV_BASE, tag: [{ system: SOURCE_TAG_SYSTEM, code: NV.directoryId, display: NV.title }] });
  t.match(obs.id, /^[0-9a-f]{32}$/, 'a local id');
  const enc = await fetch(`${BASE}/fhir/r4/${obs.encounter.reference}`, { headers: { authorization: `Bearer ${a.token}` } });
  t.equal(enc.status, 200, 'references point at the local copies');
  const prov = (await search(a.token, 'Provenance?_count=100')).entry as { resource: { target: unknown[]; agent: { who: { display: string } }[] } }[];
  t.ok(prov.length >= 1, `a Provenance per page stored (${prov.length})`);
  t.equal(
    prov.reduce((n, p) => n + p.resource.target.length, 0),
    run.created,
    'together naming every resource the run created',
  );
  for (const p of prov)
    t.same(
      p.resource.agent.map((x) => x.who.display),
      [NV.title, 'Tributary'],
    );
});

t.test('a second sync finds nothing new and makes no version', async (t) => {
  const before = await versions();
  const run = await syncConnection(deps, a.connectionId);
  t.equal(run.status, 'succeeded', run.error ?? 'succeeded');
  t.same([run.created, run.updated], [0, 0]);
  t.ok(run.fetched < 5, `only what the checkpoints do not cover (${run.fetched})`);
  t.equal(run.requests, 1, 'one request: $everything with _since');
  t.equal(await versions(), before);
});

t.test('a system without $everything is searched type by type, to the same exact result', async (t) => {
  const person = patientsOf(LS)[0];
  const l = await connected(t, 'sync-lakeside', person, LS);
  const first = await syncConnection(deps, l.connectionId);
  t.same([first.status, first.strategy, first.updated, first.failed], ['succeeded', 'per-type', 0, 0], first.error ?? 'succeeded');
  const outside = new Set(person.resources.flatMap((r) => JSON.stringify(r).match(/"(Practitioner|Organization|Location)\/[^"]+"/g) ?? []));
  t.equal(first.created, person.resources.length + outside.size, 'every resource of the patient, and what they reference outside');
  for (const type of ['Observation', 'Condition', 'Encounter', 'Immunization']) {
    t.equal(
      await countOf(l.token, `${type}?_tag=${encodeURIComponent(`${SOURCE_TAG_SYSTEM}|${LS.directoryId}`)}`),
      person.resources.filter((r) => r.resourceType === type).length,
      `${type}: as many as the source has`,
    );
  }
  const before = await versions();
  const second = await syncConnection(deps, l.connectionId);
  t.same(
    [second.created, second.updated, second.fetched],
    [0, 0, 0],
    'nothing new, nothing fetched again (the Patient too is asked for only if it changed)',
  );
  t.equal(await versions(), before, 'no version');

  // 429s: each waits out the system's Retry-After (1 s), then the sync goes on.
  await admin('faults', { fail: { count: 2, status: 429, retryAfter: 1 } }, LS);
  let started = Date.now();
  const throttled = await syncConnection(deps, l.connectionId);
  t.equal(throttled.status, 'succeeded', throttled.error ?? 'succeeded');
  t.ok(Date.now() - started >= 1900, `Retry-After was waited out twice (${Date.now() - started} ms)`);
  t.equal(throttled.requests, second.requests + 2, 'the two refused requests were sent again');

  // The per-system rate (one limiter for every process): 10 requests a second spaces this run's requests 100 ms apart.
  started = Date.now();
  const slow = await syncConnection({ ...deps, limiter: createSystemLimiter(app.pg, { ratePerSecond: 10 }) }, l.connectionId);
  t.equal(slow.status, 'succeeded');
  t.ok(Date.now() - started >= (slow.requests - 1) * 100 - 20, `${slow.requests} requests took ${Date.now() - started} ms at 10 a second`);
});

t.test('two users connected to one system never see each other', async (t) => {
  t.equal((await syncConnection(deps, b.connectionId)).status, 'succeeded');
  const aPatients = (await search(a.token, 'Patient')).entry.map((e: { resource: { name: { family: string }[] } }) => e.resource.name[0].family);
  const bPatients = (await search(b.token, 'Patient')).entry.map((e: { resource: { name: { family: string }[] } }) => e.resource.name[0].family);
  t.same(
    [aPatients, bPatients],
    [
      [(people[0].resources[0] as { name: { family: string }[] }).name[0].family],
      [(people[1].resources[0] as { name: { family: string }[] }).name[0].family],
    ],
  );
});

t.test('an access token that expired is refreshed; a malformed resource is recorded and skipped', async (t) => {
  // A change at the source, so that there is something to fetch.
  const source = people[0].resources.find((r) => r.resourceType === 'Condition')!;
  const { rows } = await app.pg.query<{ json: string }>(
    `SELECT v.res_text_vc AS json FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver JOIN trb_sandbox s ON s.app_id = r.partition_id WHERE s.name = $1 AND r.fhir_id = $2`,
    [NV.name, source.id],
  );
  t.ok(rows[0]);
  const changed = { ...JSON.parse(rows[0].json), id: source.id, note: [{ text: 'Reviewed at the source.' }] };
  const sandboxApp = (await app.pg.query('SELECT app_id FROM trb_sandbox WHERE name = $1', [NV.name])).rows[0].app_id as number;
  const owner = (await app.auth.findUser(sandboxApp, { appUserId: people[0].personKey }))!.id;
  await app.fhir.update({ partitionId: sandboxApp, ownerId: owner, baseUrl: NV_BASE }, 'Condition', source.id!, changed);

  await admin('expire-access-tokens');
  const run = await syncConnection(deps, a.connectionId);
  t.equal(run.status, 'succeeded', `the token was refreshed (${run.error ?? ''})`);
  t.equal(run.updated, 1, 'the change came in as a new version');
  const local = (
    await search(
      a.token,
      `Condition?_id=${(await search(a.token, 'Condition?_count=100')).entry.find((e: { resource: { note?: unknown } }) => e.resource.note).resource.id}`,
    )
  ).entry[0].resource;
  t.same([local.meta.versionId, local.note[0].text], ['2', 'Reviewed at the source.']);

  // Malformed: the next answer's first resource is broken; it is skipped, the rest stored.
  await app.fhir.update({ partitionId: sandboxApp, ownerId: owner, baseUrl: NV_BASE }, 'Condition', source.id!, {
    ...changed,
    note: [{ text: 'Again.' }],
  });
  await admin('faults', { malformed: { count: 3 } });
  const broken = await syncConnection(deps, a.connectionId);
  t.equal(broken.status, 'succeeded');
  t.ok(broken.failed >= 1, 'recorded as failed');
  const issues = (await app.pg.query('SELECT issues FROM trb_sync_run WHERE id = $1', [broken.runId])).rows[0].issues as { diagnostics: string }[];
  t.match(issues[0].diagnostics, /was skipped/);
});

t.test('a 503 storm is retried through; a revoked refresh token ends in needs_reauth', async (t) => {
  await admin('faults', { fail: { count: 3, status: 503, retryAfter: 0 } });
  const storm = await syncConnection(deps, b.connectionId);
  t.equal(storm.status, 'succeeded', `bounded retries with backoff get through (${storm.error ?? ''})`);
  await admin('expire-access-tokens');
  await admin('revoke-refresh-tokens');
  const run = await syncConnection(deps, b.connectionId);
  t.equal(run.status, 'needs_reauth');
  t.match(run.error, /connect again/);
  const list = await (await fetch(`${BASE}/connect/connections`, { headers: { authorization: `Bearer ${b.token}` } })).json();
  t.match(
    list.entry[0],
    { status: 'needs_reauth', last_error: /connect again/, last_run: { status: 'needs_reauth', finished_at: String } },
    'the app sees it, with the last run',
  );
  const again = await syncConnection(deps, b.connectionId);
  t.same([again.status, again.runId], ['needs_reauth', ''], 'and it stops trying (no run)');
});

t.test('the first sync starts as the person connects: `npx tributary worker`, a process of its own, takes it', async (t) => {
  // The server here runs no workers (SYNC_WORKERS=false in the tests); the worker process does.
  const worker = spawn(path.join(REPO, 'node_modules', '.bin', 'node'), [path.join(REPO, 'bin', 'tributary.ts'), 'worker'], {
    env: {
      ...process.env,
      DATABASE_URL: app.config.databaseUrl,
      ENCRYPTION_KEY: app.config.encryptionKey!.toString('hex'),
      BASE_URL: BASE,
      SANDBOXES: 'false',
      LOG_LEVEL: 'warn',
      OUTBOUND_ALLOW: '127.0.0.1',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  worker.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => worker.once('exit', (code) => r(code)));
  t.teardown(() => worker.kill('SIGKILL'));

  // The app's webhook: a receiver that fails the first delivery of the new connection's event (it
  // comes again). Other connections' scheduled syncs may send events too.
  const received: { body: string; headers: Record<string, string>; connection: string }[] = [];
  let target = '';
  const receiver = http.createServer((req, res) => {
    let body = '';
    req
      .on('data', (d) => (body += d))
      .on('end', () => {
        const connection = String(JSON.parse(body).data.connection_id);
        received.push({ body, headers: req.headers as Record<string, string>, connection });
        res.writeHead(connection === target && received.filter((r) => r.connection === target).length === 1 ? 500 : 200).end();
      });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => receiver.close(() => r())));
  const hook = await fetch(`${BASE}/connect/webhook`, {
    method: 'PUT',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      client_id: demo.clientId,
      client_secret: demoSecret,
      url: `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`,
    }),
  });
  t.equal(hook.status, 200);
  // The server issues the secret (Standard Webhooks: whsec_ + base64).
  const { secret } = (await hook.json()) as { secret: string };

  const c = await connected(t, 'sync-c', people[0]);
  target = c.connectionId;
  let run: { status: string; created: number } | undefined;
  for (let i = 0; i < 100 && !run; i++) {
    await new Promise((r) => setTimeout(r, 200));
    run = (await app.pg.query("SELECT status, created FROM trb_sync_run WHERE connection_id = $1 AND status <> 'running'", [c.connectionId])).rows[0];
  }
  t.same(run && [run.status, run.created > 300], ['succeeded', true], `synced within seconds of connecting ${stderr.slice(0, 500)}`);
  t.ok((await countOf(c.token, 'Observation')) > 0, 'the records are there');
  const mine = () => received.filter((r) => r.connection === c.connectionId);
  for (let i = 0; i < 100 && mine().length < 2; i++) await new Promise((r) => setTimeout(r, 200));
  t.equal(mine().length, 2, 'the webhook: refused once, delivered again');
  const [refused, delivered] = mine();
  t.equal(delivered.headers['webhook-id'], refused.headers['webhook-id'], 'the retry keeps the webhook-id');
  // Verified as a receiver would: the signature over id, timestamp and body, and a recent timestamp.
  t.match(new Webhook(secret).verify(delivered.body, delivered.headers), {
    type: 'sync.succeeded',
    data: { connection_id: c.connectionId, app_user_id: 'sync-c', system_id: NV.directoryId, run: { status: 'succeeded' } },
  });

  // The system revokes the refresh token: the next run ends in needs_reauth, and the app hears of it.
  await admin('expire-access-tokens');
  await admin('revoke-refresh-tokens');
  await app.queueSync(c.connectionId);
  const reauth = () =>
    mine()
      .map((r) => JSON.parse(r.body))
      .find((e) => e.type === 'connection.needs_reauth');
  for (let i = 0; i < 100 && !reauth(); i++) await new Promise((r) => setTimeout(r, 200));
  t.match(
    reauth(),
    { type: 'connection.needs_reauth', data: { connection_id: c.connectionId, run: { status: 'needs_reauth', error: /connect again/ } } },
    'a connection.needs_reauth event',
  );
  worker.kill('SIGTERM');
  t.equal(await exited, 0, 'the worker stops cleanly on SIGTERM');
});

t.test(
  'kill -9 of the worker in the middle of a sync: the pages it stored are kept, and the next run goes on from them to exact counts, no duplicates',
  async (t) => {
    // Slow answers, so that the worker is surely mid-sync when it is killed.
    await admin('faults', { slow: { count: 40, ms: 300 } });
    const worker = spawn(path.join(REPO, 'node_modules', '.bin', 'node'), [path.join(REPO, 'bin', 'tributary.ts'), 'worker'], {
      env: {
        ...process.env,
        DATABASE_URL: app.config.databaseUrl,
        ENCRYPTION_KEY: app.config.encryptionKey!.toString('hex'),
        BASE_URL: BASE,
        SANDBOXES: 'false',
        LOG_LEVEL: 'silent',
        OUTBOUND_ALLOW: '127.0.0.1',
      },
      stdio: 'ignore',
    });
    const exited = new Promise<NodeJS.Signals | null>((r) => worker.once('exit', (_code, signal) => r(signal)));
    t.teardown(() => worker.kill('SIGKILL'));
    const d = await connected(t, 'sync-d', people[1]);
    let running = false;
    for (let i = 0; i < 150 && !running; i++) {
      await new Promise((r) => setTimeout(r, 100));
      running = (await app.pg.query("SELECT 1 FROM trb_sync_run WHERE connection_id = $1 AND status = 'running'", [d.connectionId])).rowCount === 1;
    }
    t.ok(running, 'the worker is syncing');
    const during = await (await fetch(`${BASE}/connect/connections`, { headers: { authorization: `Bearer ${d.token}` } })).json();
    t.equal(during.entry[0].state, 'syncing', 'the app sees it syncing');
    // Killed once a page is stored and the query's next link kept with it.
    let kept = false;
    for (let i = 0; i < 150 && !kept; i++) {
      await new Promise((r) => setTimeout(r, 50));
      kept = (await app.pg.query('SELECT 1 FROM trb_sync_query WHERE connection_id = $1 AND next IS NOT NULL', [d.connectionId])).rowCount === 1;
    }
    t.ok(kept, 'a page stored, with the link its query goes on with');
    worker.kill('SIGKILL');
    t.equal(await exited, 'SIGKILL');
    const stored = await countOf(d.token, 'Observation');
    const whole = people[1].resources.filter((r) => r.resourceType === 'Observation').length;
    t.ok(stored > 0 && stored < whole, `what the cut-off run stored is kept (${stored} of ${whole} Observations)`);

    await fetch(`${BASE}/admin/sandbox/${NV.name}/faults`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    const run = await syncConnection(deps, d.connectionId);
    t.equal(run.status, 'succeeded', run.error ?? 'succeeded');
    t.ok(run.fetched < people[1].resources.length, `it went on from the kept link (${run.fetched} fetched of ${people[1].resources.length})`);
    const source = people[1].resources;
    for (const type of ['Observation', 'Encounter', 'Condition']) {
      t.equal(await countOf(d.token, type), source.filter((r) => r.resourceType === type).length, `${type}: exactly the source's, no duplicates`);
    }

    // The connection's log: the cut-off run is marked failed, the next one succeeded.
    const runs = await (
      await fetch(`${BASE}/connect/connections/${d.connectionId}/runs`, { headers: { authorization: `Bearer ${d.token}` } })
    ).json();
    t.match(runs.entry, [
      { status: 'succeeded', strategy: 'everything', created: run.created, finished_at: String },
      { status: 'failed', error: /cut off.*pages it stored were kept/, finished_at: String },
    ]);
    const list = await (await fetch(`${BASE}/connect/connections`, { headers: { authorization: `Bearer ${d.token}` } })).json();
    t.match(list.entry[0], { state: 'idle', last_success_at: String, last_run: { id: runs.entry[0].id } }, 'idle, with its last run');
    const paged = await (
      await fetch(`${BASE}/connect/connections/${d.connectionId}/runs?limit=1&before=${runs.entry[0].id}`, {
        headers: { authorization: `Bearer ${d.token}` },
      })
    ).json();
    t.same(
      paged.entry.map((r: { id: string }) => r.id),
      [runs.entry[1].id],
      'paged with before',
    );
    const theirs = await fetch(`${BASE}/connect/connections/${d.connectionId}/runs`, { headers: { authorization: `Bearer ${a.token}` } });
    t.equal(theirs.status, 404, "another user's connection is not found");
    t.equal(
      (await fetch(`${BASE}/connect/connections/${d.connectionId}/runs?limit=0`, { headers: { authorization: `Bearer ${d.token}` } })).status,
      400,
    );
  },
);

t.test('operators: POST /admin/sync queues every active connection; GET /admin/sync sums up the runs', async (t) => {
  const headers = { authorization: `Bearer ${ADMIN_KEY}` };
  t.equal((await fetch(`${BASE}/admin/sync`, { method: 'POST' })).status, 401, 'the admin key is required');
  const active = Number((await app.pg.query("SELECT count(*) FROM trb_connection WHERE status = 'active'")).rows[0].count);
  const queued = await (await fetch(`${BASE}/admin/sync`, { method: 'POST', headers })).json();
  t.equal(queued.queued, active, 'every active connection (needs_reauth ones left out)');
  const jobs = await app.pg.query("SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'sync' AND state = 'created'");
  t.equal(jobs.rows[0].n, active, 'one job each');
  const again = await (await fetch(`${BASE}/admin/sync`, { method: 'POST', headers })).json();
  t.equal(again.queued, active);
  t.equal(
    (await app.pg.query("SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'sync' AND state = 'created'")).rows[0].n,
    active,
    'never two waiting for one connection',
  );

  const runs = (await app.pg.query("SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'needs_reauth')::int AS reauth FROM trb_sync_run"))
    .rows[0];
  const summary = await (await fetch(`${BASE}/admin/sync?since=2000-01-01T00:00:00Z`, { headers })).json();
  t.match(summary, { runs: runs.n, needs_reauth: runs.reauth, active_connections: active, errors: Array });
  t.ok(
    summary.errors.some((e: { error: string }) => /connect again/.test(e.error)),
    'the commonest errors are named',
  );
  t.equal((await fetch(`${BASE}/admin/sync?since=yesterday`, { headers })).status, 400);
});
