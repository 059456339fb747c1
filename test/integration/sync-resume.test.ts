/**
 * A first sync cut off at random points resumes and ends exact: a sandbox patient with 50,000
 * resources (src/sandbox/big.ts, as POST /admin/sandbox/{name}/big-patient makes it), synced by `npx tributary worker` as a child process, which is killed (SIGKILL: no
 * shutdown, its database sessions dropped by the server) at three random moments of its runs and
 * started again each time, then left to finish. The user's records then equal the source's: the
 * same count per type and the same ids (each source record under its one local id, so none twice),
 * each resource in one version, no run left `running`, and a second run creates and changes nothing.
 * A run after a cut that had stored pages fetches fewer resources than the record holds: it goes on
 * from what was stored instead of starting over.
 *
 * The system is Lakeside (our own FHIR routes: every type searchable, nothing refused), so the
 * source's records are exactly what the sync must bring; the vendors' refusals are tested in
 * sync-vendors.test.ts. About 4 to 5 minutes on 2 cores (3 min 48 s and 4 min 51 s measured, on a
 * machine busy with other work), over the 2 minutes hoped for: the 50,000 resources are made (20 to
 * 26 s), stored by the runs (the last one took 142 to 150 s, about 330 a second), and fetched again
 * by the second run (30 to 75 s: they changed within the checkpoint's margin, so it takes them all
 * again).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { buildApp } from '../../src/app.ts';
import { makeBigPatient, type BigPatient } from '../../src/sandbox/big.ts';
import { DEFAULT_SANDBOXES } from '../../src/sandbox/systems.ts';
import { localId, type Origin } from '../../src/sync/mapper.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';
import { get, signIn } from './connect-support.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
const RESOURCES = 50_000;
const KILLS = 3;
const LS = { ...DEFAULT_SANDBOXES.find((d) => d.name === 'lakeside')!, patients: 1 };
const port = await freePort();
const BASE = `http://127.0.0.1:${port}`;
const ADMIN_KEY = 'k'.repeat(40);
const app = await buildApp(
  testConfig(await testDatabase(t), {
    baseUrl: BASE,
    sandboxes: true,
    sandboxSystems: [LS],
    sandboxYears: 1,
    fhirAuth: 'required',
    adminKey: ADMIN_KEY,
  }),
  { logger: false },
);
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());
await app.sandboxesLoaded;
const admin = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };

/** The worker, as an operator runs it beside the server (a day's interval keeps its schedule out of the way). */
function startWorker(): { child: ChildProcess; exited: Promise<void> } {
  const child = spawn(path.join(REPO, 'node_modules', '.bin', 'node'), [path.join(REPO, 'bin', 'tributary.ts'), 'worker'], {
    env: {
      ...process.env,
      DATABASE_URL: app.config.databaseUrl,
      ENCRYPTION_KEY: app.config.encryptionKey!.toString('hex'),
      BASE_URL: BASE,
      SANDBOXES: 'false',
      LOG_LEVEL: 'silent',
      OUTBOUND_ALLOW: '127.0.0.1',
      SYNC_INTERVAL_MINUTES: '1440',
    },
    stdio: 'ignore',
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.teardown(() => void child.kill('SIGKILL'));
  return { child, exited };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface RunRow {
  id: string;
  status: string;
  fetched: number;
  created: number;
  updated: number;
  requests: number;
  started_at: Date;
  finished_at: Date | null;
  error: string | null;
}
const runsOf = async (connectionId: string) =>
  (
    await app.pg.query<RunRow>(
      'SELECT id::text, status, fetched, created, updated, requests, started_at, finished_at, error FROM trb_sync_run WHERE connection_id = $1 ORDER BY started_at',
      [connectionId],
    )
  ).rows;
/** Waits (up to `s` seconds) for a run of the connection started after `after` to be in one of `statuses`. */
async function runAfter(connectionId: string, after: Date, statuses: string[], s: number): Promise<RunRow | undefined> {
  for (const deadline = Date.now() + s * 1000; Date.now() < deadline; await sleep(50)) {
    const run = (await runsOf(connectionId)).find((r) => r.started_at >= after && statuses.includes(r.status));
    if (run) return run;
  }
  return undefined;
}

let big: BigPatient;
let source: { res_type: string; fhir_id: string }[];
let connectionId: string;
let userId: string;
let appId: number;
const mine = async () =>
  (
    await app.pg.query<{ res_type: string; fhir_id: string; res_ver: string }>(
      "SELECT res_type, fhir_id, res_ver::text FROM hfj_resource WHERE partition_id = $1 AND owner_id = $2 AND res_deleted_at IS NULL AND res_type <> 'Provenance'",
      [appId, userId],
    )
  ).rows;
const storedCount = async () =>
  Number(
    (
      await app.pg.query("SELECT count(*) AS n FROM hfj_resource WHERE partition_id = $1 AND owner_id = $2 AND res_type <> 'Provenance'", [
        appId,
        userId,
      ])
    ).rows[0].n,
  );

t.test(`the sandbox makes a patient with ${RESOURCES} resources, and a user connects as that patient`, async (t) => {
  const { rows } = await app.pg.query<{ app_id: number }>('SELECT app_id FROM trb_sandbox WHERE name = $1', [LS.name]);
  // As POST /admin/sandbox/{name}/big-patient makes it.
  const started = Date.now();
  big = await makeBigPatient({ pool: app.pg, bulk: app.fhir, auth: app.auth }, rows[0].app_id, { resources: RESOURCES, idPrefix: LS.idPrefix });
  t.comment(`${big.resources} resources made in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  // The patient's records at the source: those owned by the patient's user of the sandbox's app
  // (its Organization and Practitioner too, which the sync reads as what the records reference).
  source = (
    await app.pg.query<{ res_type: string; fhir_id: string }>(
      `SELECT r.res_type, r.fhir_id FROM hfj_resource r WHERE r.partition_id = $1 AND r.res_deleted_at IS NULL
         AND r.owner_id = (SELECT owner_id FROM hfj_resource WHERE partition_id = $1 AND res_type = 'Patient' AND fhir_id = $2)`,
      [rows[0].app_id, big.patientId],
    )
  ).rows;
  t.equal(source.length, big.resources, `the source holds the ${big.resources} resources it said it made (asked: ${RESOURCES})`);
  t.ok(source.length >= RESOURCES * 0.9, `about ${RESOURCES}`);

  const { app: demo } = await app.auth.createApp({ name: 'Resume app', redirectUris: ['https://app.example/cb'] });
  appId = demo.id;
  const user = (await app.auth.createUser(demo.id, 'resume-user'))!;
  userId = user.id;
  const { access_token } = await app.auth.exchangeCode(demo, await app.auth.newCode(demo.id, user.id));
  const callback = await signIn(
    t,
    BASE,
    `${BASE}/connect/system/clinical/${LS.directoryId}?client_id=${demo.clientId}&access_token=${access_token}`,
    big.username,
    big.password,
  );
  await get(callback.toString());
  const c = await app.pg.query<{ id: string }>('SELECT id::text FROM trb_connection WHERE user_id = $1', [user.id]);
  t.equal(c.rowCount, 1, 'connected (the first sync is queued)');
  connectionId = c.rows[0].id;
});

/** The sync queue's jobs by state (what a failure shows). */
const jobs = async () => (await app.pg.query("SELECT state, count(*)::int AS n FROM pgboss.job WHERE name = 'sync' GROUP BY state")).rows;
/** Set when a step could not go on: the later ones are skipped rather than waited out. */
let broken = false;
const kills: { at: number; stored: number; ms: number }[] = [];
t.test(`the worker is killed at ${KILLS} random moments of its runs, and started again each time`, async (t) => {
  // Where to cut: at a share of the record stored, drawn at random (ascending), or after a random
  // time should the stores not move (a run still reading the source).
  const shares = Array.from({ length: KILLS }, () => 0.02 + Math.random() * 0.88).sort();
  for (let k = 0; k < KILLS; k++) {
    const restarted = new Date();
    const w = startWorker();
    // The first sync was queued at the callback; after a cut, the connection is queued again (the
    // dead worker's job is still active in the queue), as the schedule would.
    if (k > 0) await fetch(`${BASE}/admin/sync`, { method: 'POST', headers: { authorization: admin.authorization } });
    const run = await runAfter(connectionId, restarted, ['running'], 60);
    if (!t.ok(run, `cut ${k + 1}: a run is going`)) {
      t.comment(`the sync queue's jobs: ${JSON.stringify(await jobs())}`);
      broken = true;
      return;
    }
    const target = Math.floor(shares[k] * source.length);
    const patienceMs = 1000 + Math.random() * 8000;
    const t0 = Date.now();
    let stored = await storedCount();
    while (stored < target && Date.now() - t0 < patienceMs) {
      await sleep(20);
      stored = await storedCount();
    }
    w.child.kill('SIGKILL');
    await w.exited;
    const after = (await runsOf(connectionId)).find((r) => r.id === run?.id);
    t.equal(
      after?.status,
      'running',
      `cut ${k + 1}: the worker died mid-run (${stored} of ${source.length} stored, ${Date.now() - t0} ms in; the target was ${target})`,
    );
    kills.push({ at: target, stored, ms: Date.now() - t0 });
  }
});

t.test('started once more, the worker finishes the first sync, exactly', async (t) => {
  if (broken) return t.fail('skipped: the cuts could not be made');
  const restarted = new Date();
  const storedBefore = await storedCount();
  const w = startWorker();
  await fetch(`${BASE}/admin/sync`, { method: 'POST', headers: { authorization: admin.authorization } });
  const run = await runAfter(connectionId, restarted, ['succeeded', 'failed', 'needs_reauth'], 300);
  t.equal(run?.status, 'succeeded', run?.error ?? 'the run finished');
  t.comment(
    `the last run: ${run?.fetched} fetched, ${run?.created} created, ${run?.updated} updated, ${run?.requests} requests, ${run && run.finished_at ? ((run.finished_at.getTime() - run.started_at.getTime()) / 1000).toFixed(1) : '?'} s`,
  );
  if (storedBefore > 0)
    t.ok(
      run!.fetched < source.length,
      `it went on from what the cut runs had stored (${storedBefore}): ${run!.fetched} fetched, not the whole ${source.length}`,
    );

  const runs = await runsOf(connectionId);
  t.same(
    runs.filter((r) => r.status === 'running'),
    [],
    'no run is left running',
  );
  t.ok(runs.length >= KILLS + 1, `${runs.length} runs: the ${KILLS} cut ones and the last`);

  const o: Origin = { userId, systemId: LS.directoryId, systemName: LS.title, base: `${BASE}/sandbox/${LS.name}/fhir/r4` };
  const have = await mine();
  const byType = (rows: { res_type: string }[]) => rows.reduce((m, r) => m.set(r.res_type, (m.get(r.res_type) ?? 0) + 1), new Map<string, number>());
  const [want, got] = [byType(source), byType(have)];
  t.same(Object.fromEntries([...got].sort()), Object.fromEntries([...want].sort()), 'as many of each type as the source has');
  const expected = new Set(source.map((r) => `${r.res_type}/${localId(o, r.res_type, r.fhir_id)}`));
  const ours = have.map((r) => `${r.res_type}/${r.fhir_id}`);
  t.equal(new Set(ours).size, ours.length, 'no id twice');
  t.equal(
    ours.filter((id) => !expected.has(id)).length,
    0,
    'every record is a source record under its local id (no duplicate of a source id under another)',
  );
  const oursSet = new Set(ours);
  t.equal([...expected].filter((id) => !oursSet.has(id)).length, 0, 'every source record is there');
  t.equal(have.filter((r) => r.res_ver !== '1').length, 0, 'each in one version: nothing stored twice');
  w.child.kill('SIGTERM');
  await w.exited;
});

t.test('a second run creates nothing and makes no version', async (t) => {
  if (broken) return t.fail('skipped: the cuts could not be made');
  const versions = async () => Number((await app.pg.query('SELECT count(*) AS n FROM hfj_res_ver WHERE partition_id = $1', [appId])).rows[0].n);
  const before = await versions();
  const started = new Date();
  const w = startWorker();
  await fetch(`${BASE}/admin/sync`, { method: 'POST', headers: { authorization: admin.authorization } });
  const run = await runAfter(connectionId, started, ['succeeded', 'failed', 'needs_reauth'], 300);
  t.equal(run?.status, 'succeeded', run?.error ?? 'the run finished');
  t.same([run?.created, run?.updated], [0, 0], `nothing created or changed (${run?.fetched} fetched again)`);
  t.equal(await versions(), before, 'no new version, no Provenance');
  w.child.kill('SIGTERM');
  await w.exited;
});
