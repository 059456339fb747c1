/**
 * Scaling out on one machine: one API process against three on the same database, and a sync
 * cycle shared by two worker processes.
 *
 *   npx node bench/scale.ts [--clients 30] [--read-s 15] [--create-s 10] [--search-s 15] [--patients 1000]
 *                           [--search-patients 100] [--connections 1000] [--system north-valley] [--years 1]
 *                           [--cycles 2] [--fast-cycles 1] [--no-one-worker] [--templates DIR] [--quick]
 *
 * One embedded PostgreSQL data folder (started by the first server, as `npm start` does: see
 * bench/server.ts); every process shares it, with one ENCRYPTION_KEY and one BASE_URL (the first
 * server's: the sandboxes, the connect flow's redirects and the sync all go there). Two
 * `npx tributary worker` processes run from the start to the end. FHIR requests go without
 * credentials (FHIR_AUTH=off, the built-in app), as in bench/read-create.ts and bench/search.ts.
 *   0. Data: --patients Patients (read by id), --search-patients patients of about 1,000 resources
 *      each in the shape of ../shared/synthea (bench/search-data.ts), VACUUM ANALYZE.
 *   1. One API process (`node src/server.ts`, SYNC_WORKERS=false, EXPORT_CONCURRENCY=0): autocannon
 *      with --clients connections reads Patients by id (--read-s), creates Patients and
 *      Observations in turn (--create-s), and searches (--search-s): `Observation?patient=X&code=
 *      http://loinc.org|Y` (a loaded patient and one of its codes) and `Patient?name=<a loaded
 *      family>` in turn. Each after a 2 s warm-up that is not counted.
 *   2. Two more API processes on the same database, and the same three loads spread over the three:
 *      one autocannon instance given the three URLs, its connections dealt round robin (no proxy
 *      in between, which would cost CPU on these same cores). The ratio three/one of each. On a
 *      2-core machine the three share the cores with PostgreSQL, the workers and autocannon: the
 *      ratio shows what more processes cost, not what more machines would give.
 *   3. --connections app users connect to --system through the real flow (bench/connect.ts); their
 *      first syncs run in the two workers. Then --cycles cycles: POST /admin/sync (through the
 *      second API process) queues every connection, and the cycle lasts until the last of its runs
 *      has finished, then one more with the first worker alone (the second stopped: the comparison,
 *      on this machine and data; --no-one-worker skips it); then the same with the workers restarted
 *      under SYNC_SYSTEM_RATE=1000 (the system's rate no longer the limit), --fast-cycles of them.
 *      For each: its duration, requests, the runs each worker did (from their `sync run` log lines)
 *      and the connections run more than once in the cycle's window (trb_sync_run, counted in
 *      PostgreSQL: must be none). --quick: a small run of everything (100 Patients, 3 search
 *      patients, 30 connections, 3 s loads, one cycle of each). The sandbox's records are minutes
 *      old here, younger than SYNC_CHECKPOINT_MARGIN_SECONDS (300 s), so each increment fetches them
 *      again (about 1.6 requests a run at North Valley, 100 resources fetched, none written), as in
 *      bench/sync-cycle.ts now; a server whose records are older asks one.
 * Prints a summary, then one JSON line. Exits 1 when a request failed or a run was done twice.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { FHIR, benchObservation, benchPatient, createPatients } from './fixtures.ts';
import pg from 'pg';
import { runningEmbeddedUrl } from '../src/db/embedded.ts';
import { DEFAULT_SANDBOXES } from '../src/sandbox/systems.ts';
import { benchApp, connectUser, sandboxPatients } from './connect.ts';
import { DEFAULT_SEED, generator, loadPatients, loadTemplates } from './search-data.ts';
import {
  REPO,
  cpuTimes,
  descendantsMeter,
  machineBusySeconds,
  quantile,
  round,
  runsFinished,
  spawnServer,
  spawnWorker,
  type SpawnedServer,
  type SpawnedWorker,
} from './server.ts';

const { values: args } = parseArgs({
  allowNegative: true,
  options: {
    clients: { type: 'string', default: '30' },
    'read-s': { type: 'string', default: '15' },
    'create-s': { type: 'string', default: '10' },
    'search-s': { type: 'string', default: '15' },
    patients: { type: 'string', default: '1000' },
    'search-patients': { type: 'string', default: '100' },
    connections: { type: 'string', default: '1000' },
    system: { type: 'string', default: 'north-valley' },
    years: { type: 'string', default: '1' },
    cycles: { type: 'string', default: '2' },
    'fast-cycles': { type: 'string', default: '1' },
    'one-worker': { type: 'boolean', default: true },
    templates: { type: 'string', default: path.resolve(REPO, '..', 'shared', 'synthea') },
    quick: { type: 'boolean', default: false },
  },
});
const clamp = (v: string, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.floor(Number(v)) || lo));
const q = args.quick;
const CLIENTS = clamp(args.clients, 1, 512);
const READ_S = q ? 3 : clamp(args['read-s'], 1, 600);
const CREATE_S = q ? 3 : clamp(args['create-s'], 1, 600);
const SEARCH_S = q ? 3 : clamp(args['search-s'], 1, 600);
const PATIENTS = q ? 100 : clamp(args.patients, 1, 100_000);
const SEARCH_PATIENTS = q ? 3 : clamp(args['search-patients'], 1, 10_000);
const N = q ? 30 : clamp(args.connections, 1, 100_000);
const YEARS = clamp(args.years, 1, 20);
const CYCLES = q ? 1 : clamp(args.cycles, 0, 100);
const FAST_CYCLES = q ? 1 : Math.max(0, Math.floor(Number(args['fast-cycles'])) || 0);
const ONE_WORKER = args['one-worker'];
const CONNECT_CONCURRENCY = 8;
const WARMUP_S = 2;
const def = DEFAULT_SANDBOXES.find((d) => d.name === args.system);
if (!def) throw new Error(`--system is one of ${DEFAULT_SANDBOXES.map((d) => d.name).join(', ')}`);
const ADMIN_KEY = `bench-${randomBytes(24).toString('hex')}`;

// Every process gets these (spawnServer and spawnWorker pass the environment on).
Object.assign(process.env, {
  ADMIN_KEY,
  ENCRYPTION_KEY: randomBytes(32).toString('hex'),
  USER_API_RATE_LIMIT: '1000000',
  SANDBOXES: 'true',
  SANDBOX_YEARS: String(YEARS),
  SYNC_WORKERS: 'false',
  EXPORT_CONCURRENCY: '0',
  FHIR_AUTH: 'off',
});

// ---------------------------------------------------------------------------------------------
// The processes

const servers: SpawnedServer[] = [];
let workers: SpawnedWorker[] = [];
/** The `sync run` log lines of the workers: run id -> the worker (index) that logged it. */
const ranBy = new Map<string, number[]>();

async function startWorkers(env: Record<string, string> = {}): Promise<SpawnedWorker[]> {
  const first = servers[0];
  // The schedule would queue connections while the cycles run: a day's interval keeps it out (as
  // bench/sync-cycle.ts). The sandboxes are the first server's, on loopback: named in the allow-list.
  const started = await Promise.all(
    [0, 1].map(() =>
      spawnWorker(first, { OUTBOUND_ALLOW: `localhost:${first.port}`, SYNC_INTERVAL_MINUTES: '1440', EXPORT_CONCURRENCY: '1', ...env }),
    ),
  );
  started.forEach((w, i) => {
    let partial = '';
    w.child.stdout!.on('data', (d: Buffer | string) => {
      const parts = (partial + d.toString()).split('\n');
      partial = parts.pop()!;
      for (const line of parts) {
        if (!line.includes('"sync run"')) continue;
        const runId = String((JSON.parse(line) as { runId?: string }).runId ?? '');
        if (runId) ranBy.set(runId, [...(ranBy.get(runId) ?? []), i]);
      }
    });
  });
  return started;
}
const stopWorkers = async () => {
  await Promise.all(workers.map((w) => w.stop()));
  workers = [];
};

/**
 * The cores kept busy, from now until stop(): by the API processes, PostgreSQL, the workers, this
 * bench, everything else (PostgreSQL's backends by descendantsMeter, which keeps what one that exits used).
 */
function meter() {
  const api = () => servers.reduce((n, s) => n + (s.cpu()?.server ?? 0), 0);
  const work = () => workers.reduce((n, w) => n + (cpuTimes(w.pid)?.server ?? 0), 0);
  const postgresMeter = descendantsMeter(servers[0].pid!);
  const t0 = performance.now();
  const [a0, w0, b0, m0] = [api(), work(), process.cpuUsage(), machineBusySeconds()];
  return {
    stop() {
      const postgres = postgresMeter.stop();
      const secs = (performance.now() - t0) / 1000;
      const b = process.cpuUsage(b0);
      const used = { api: api() - a0, postgres, workers: work() - w0, bench: (b.user + b.system) / 1e6 };
      const other = Math.max(0, machineBusySeconds() - m0 - used.api - used.postgres - used.workers - used.bench);
      const per = (x: number) => round(x / secs, 2)!;
      return { api: per(used.api), postgres: per(used.postgres), workers: per(used.workers), bench: per(used.bench), other: per(other) };
    },
  };
}
type Cores = ReturnType<ReturnType<typeof meter>['stop']>;
const describeCores = (c: Cores) =>
  `cores busy: API processes ${c.api}, PostgreSQL ${c.postgres}, workers ${c.workers}, bench ${c.bench}, other ${c.other} (of ${os.availableParallelism()})` +
  (c.other > 0.2 ? '  WARNING: other processes kept cores busy; the figures are disturbed' : '');

// ---------------------------------------------------------------------------------------------
// Loads

interface Load {
  requests: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  failed: number;
  coresBusy: Cores;
}

/** autocannon over `urls` (connections dealt round robin), after a warm-up; latency over every answer. */
async function load(urls: string[], requests: autocannon.Request[], seconds: number): Promise<Load> {
  // autocannon takes several URLs (its README; @types/autocannon says one): client i goes to url i mod n.
  const url = urls as unknown as string;
  await autocannon({ url, connections: CLIENTS, duration: WARMUP_S, requests });
  const times: number[] = [];
  const cpu = meter();
  // Without a callback autocannon answers its instance, which is also a promise of the result (its types say only the latter).
  const instance = autocannon({ url, connections: CLIENTS, duration: seconds, requests, timeout: 10 }) as unknown as autocannon.Instance &
    Promise<autocannon.Result>;
  instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    if (status < 300) times.push(ms);
  });
  const r = await instance;
  const coresBusy = cpu.stop();
  times.sort((a, b) => a - b);
  return {
    requests: r['2xx'],
    requestsPerSecond: round(r['2xx'] / (r.duration || seconds))!,
    p50Ms: round(quantile(times, 0.5), 2)!,
    p99Ms: round(quantile(times, 0.99), 2)!,
    failed: r.non2xx + r.errors + r.timeouts,
    coresBusy,
  };
}

/** The LOINC codes every Synthea template patient has (vital signs, pain score, smoking status): bench/search.ts's. */
const CODES = ['8302-2', '29463-7', '72514-3', '55284-4', '39156-5', '72166-2'];

/** The search requests: for each loaded patient, its code searches and a search of its family name, in turn. */
function searchRequests(state: { patients: Record<string, string> }, templatesDir: string): autocannon.Request[] {
  const gen = generator(loadTemplates(templatesDir), DEFAULT_SEED);
  const byCode: string[] = [];
  const byName: string[] = [];
  for (const [i, id] of Object.entries(state.patients)) {
    const facts = gen.facts(Number(i));
    for (const code of CODES.filter((c) => facts.loincCodes.has(c)))
      byCode.push(`/fhir/r4/Observation?patient=${id}&code=${encodeURIComponent(`http://loinc.org|${code}`)}`);
    byName.push(`/fhir/r4/Patient?name=${encodeURIComponent(gen.patient(Number(i)).family)}`);
  }
  const paths = byCode.flatMap((p, k) => [p, byName[k % byName.length]]);
  return paths.map((p) => ({ method: 'GET' as const, path: p, headers: { accept: 'application/fhir+json' } }));
}

// ---------------------------------------------------------------------------------------------
// The sync cycle

interface Cycle {
  kind: 'default rate' | 'SYNC_SYSTEM_RATE=1000';
  /** Worker processes running it (one: the comparison). */
  workers: number;
  seconds: number;
  /** Requests to the system in the cycle, and a run. */
  requests: number;
  requestsPerRun: number;
  runs: number;
  succeeded: number;
  perWorker: number[];
  /** Runs no worker's log line names, or more than one names. */
  unattributed: number;
  /** Connections with more than one run in the cycle's window, and runs skipped (a lock found taken). */
  connectionsRunTwice: number;
  skipped: number;
}

let db: pg.Client;
const adminHeaders = { authorization: `Bearer ${ADMIN_KEY}` };
const finished = (base: string, since: string, n: number, timeoutS: number) => runsFinished(base, ADMIN_KEY, since, n, timeoutS, true);

/** One cycle: every connection queued through the second API process, until its last run ends; checked in PostgreSQL. */
async function cycle(kind: Cycle['kind']): Promise<Cycle> {
  const base = servers[1 % servers.length].base;
  const t0 = (await db.query<{ now: Date }>('SELECT now()')).rows[0].now;
  const queued = (await (await fetch(`${base}/admin/sync`, { method: 'POST', headers: adminHeaders })).json()) as { queued: number };
  if (queued.queued !== N) throw new Error(`${queued.queued} connections queued, not ${N}`);
  const done = await finished(base, t0.toISOString(), N, 3600);
  const seconds = (Date.parse(done.last_finished_at!) - t0.getTime()) / 1000;
  // A moment for a run done twice to show, and for the workers' last lines.
  await new Promise((r) => setTimeout(r, 1000));
  const { rows } = await db.query<{ id: string; connection_id: string; status: string }>(
    'SELECT id::text, connection_id::text, status FROM trb_sync_run WHERE started_at >= $1',
    [t0],
  );
  const perConnection = Map.groupBy(rows, (r) => r.connection_id);
  const perWorker = [0, 0];
  let unattributed = 0;
  for (const r of rows) {
    const by = ranBy.get(r.id) ?? [];
    if (by.length === 1) perWorker[by[0]]++;
    else unattributed++;
  }
  const c: Cycle = {
    kind,
    workers: workers.length,
    seconds: round(seconds, 1)!,
    requests: done.requests,
    requestsPerRun: round(done.requests / N, 2)!,
    runs: rows.length,
    succeeded: rows.filter((r) => r.status === 'succeeded').length,
    perWorker,
    unattributed,
    connectionsRunTwice: [...perConnection.values()].filter((rs) => rs.length > 1).length,
    skipped: rows.filter((r) => r.status === 'skipped').length,
  };
  console.log(
    `cycle (${kind}, ${c.workers} worker${c.workers > 1 ? 's' : ''}): ${N} connections in ${c.seconds} s (${Math.floor((N / seconds) * 120)} per 2-minute window); ${c.succeeded} runs succeeded, ${c.requests} requests to the system (${c.requestsPerRun} a run); worker 1 ran ${perWorker[0]}, worker 2 ran ${perWorker[1]}${unattributed ? `, ${unattributed} not told` : ''}; connections run twice: ${c.connectionsRunTwice}, runs skipped: ${c.skipped}`,
  );
  return c;
}

// ---------------------------------------------------------------------------------------------

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-scale-'));
let failed = 0;
const onSignal = () => void stopAll().finally(() => process.exit(130));
process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
async function stopAll() {
  await stopWorkers();
  await db?.end().catch(() => {});
  for (const s of servers.slice(1)) await s.stop();
  await servers[0]?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}

try {
  const t0 = Date.now();
  servers.push(await spawnServer(path.join(dataDir, 'api1'), { remove: false, readyTimeoutMs: 120_000, stopTimeoutMs: 60_000 }));
  const first = servers[0];
  const url = runningEmbeddedUrl(first.dataDir, first.pgPort);
  if (!url) throw new Error('the embedded PostgreSQL of the first server was not found');
  db = new pg.Client({ connectionString: url, application_name: 'tributary-bench' });
  await db.connect();
  // The others use the first server's PostgreSQL and BASE_URL; the sandboxes are written before they start.
  Object.assign(process.env, { DATABASE_URL: url, BASE_URL: `http://localhost:${first.port}` });
  for (let i = 0; i < 600; i++) {
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM trb_sandbox WHERE loaded_at IS NULL');
    if (rows[0].n === 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  workers = await startWorkers();

  // 0. The data.
  const ids = await createPatients(first.base, PATIENTS);
  const search = await loadPatients({
    base: first.base,
    patients: SEARCH_PATIENTS,
    seed: DEFAULT_SEED,
    concurrency: 4,
    templatesDir: args.templates,
  });
  const searches = searchRequests(search.state, args.templates);
  const vacuum0 = Date.now();
  await db.query('VACUUM ANALYZE');
  console.log(
    `data: ${PATIENTS} Patients to read, ${SEARCH_PATIENTS} patients of ${search.state.resources} resources to search (loaded at ${Math.round(search.loadedNow.resources / search.loadedNow.seconds)}/s), VACUUM ANALYZE ${round((Date.now() - vacuum0) / 1000, 1)} s; set up in ${round((Date.now() - t0) / 1000, 1)} s`,
  );

  const reads = ids.map((id) => ({ method: 'GET' as const, path: `/fhir/r4/Patient/${id}`, headers: { accept: 'application/fhir+json' } }));
  const creates = [
    { method: 'POST' as const, path: '/fhir/r4/Patient', headers: FHIR, body: JSON.stringify(benchPatient(0)) },
    { method: 'POST' as const, path: '/fhir/r4/Observation', headers: FHIR, body: JSON.stringify(benchObservation(ids[0])) },
  ];
  const round3 = async (urls: string[]) => ({
    read: await load(urls, reads, READ_S),
    create: await load(urls, creates, CREATE_S),
    search: await load(urls, searches, SEARCH_S),
  });

  // 1. One API process.
  const one = await round3([first.base]);
  // 2. Three.
  servers.push(
    ...(await Promise.all(
      [2, 3].map((n) => spawnServer(path.join(dataDir, `api${n}`), { remove: false, readyTimeoutMs: 120_000, stopTimeoutMs: 60_000 })),
    )),
  );
  const three = await round3(servers.map((s) => s.base));
  const ratio = (k: keyof typeof one) => round(three[k].requestsPerSecond / one[k].requestsPerSecond, 2)!;
  const show = (name: string, k: keyof typeof one) =>
    [
      `${name}: one process ${one[k].requestsPerSecond}/s (p50 ${one[k].p50Ms} ms, p99 ${one[k].p99Ms} ms), three ${three[k].requestsPerSecond}/s (p50 ${three[k].p50Ms} ms, p99 ${three[k].p99Ms} ms): three/one ${ratio(k)}`,
      `  one:   ${describeCores(one[k].coresBusy)}`,
      `  three: ${describeCores(three[k].coresBusy)}`,
    ].join('\n');
  failed += [one, three].reduce((n, r) => n + r.read.failed + r.create.failed + r.search.failed, 0);

  // 3. The sync: connections through the real flow; their first syncs in the two workers.
  const app = await benchApp(first.base, ADMIN_KEY);
  const people = sandboxPatients(def, YEARS);
  const connectStarted = new Date();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONNECT_CONCURRENCY }, async () => {
      while (next < N) {
        const i = next++;
        const p = people[i % people.length];
        await connectUser(first.base, app, `scale-${i}`, def.directoryId, p.username, p.password);
        if ((i + 1) % 100 === 0) process.stderr.write(`  ${i + 1}/${N} connected\n`);
      }
    }),
  );
  const connectS = (Date.now() - connectStarted.getTime()) / 1000;
  const firsts = await finished(first.base, connectStarted.toISOString(), N, 3600);
  const firstS = (Date.parse(firsts.last_finished_at!) - connectStarted.getTime()) / 1000;
  console.log(
    `${N} users connected to ${def.title} in ${round(connectS, 1)} s; their first syncs (${firsts.succeeded} succeeded, ${firsts.created} resources) done ${round(firstS, 1)} s after the first connect began`,
  );
  // Each setting: its cycles with the two workers, then one with the first worker alone (the second
  // stopped), for the comparison on this machine and data.
  const cycles: Cycle[] = [];
  const alone = async (kind: Cycle['kind']) => {
    if (!ONE_WORKER) return;
    await workers.pop()!.stop();
    cycles.push(await cycle(kind));
  };
  for (let c = 0; c < CYCLES; c++) cycles.push(await cycle('default rate'));
  if (CYCLES) await alone('default rate');
  if (FAST_CYCLES) {
    await stopWorkers();
    workers = await startWorkers({ SYNC_SYSTEM_RATE: '1000' });
    for (let c = 0; c < FAST_CYCLES; c++) cycles.push(await cycle('SYNC_SYSTEM_RATE=1000'));
    await alone('SYNC_SYSTEM_RATE=1000');
  }
  const twice = cycles.reduce((n, c) => n + c.connectionsRunTwice + c.skipped, 0);
  failed += twice + cycles.reduce((n, c) => n + (N - c.succeeded), 0);

  console.log(`\nscale: ${CLIENTS} autocannon connections, ${os.availableParallelism()} cores; two workers throughout`);
  console.log(show(`read by id (${READ_S} s)`, 'read'));
  console.log(show(`create, Patient/Observation (${CREATE_S} s)`, 'create'));
  console.log(show(`search, Observation?patient=&code= and Patient?name= (${SEARCH_S} s)`, 'search'));
  for (const c of cycles)
    console.log(
      `sync cycle of ${N} connections, ${c.kind}, ${c.workers} worker${c.workers > 1 ? 's' : ''}: ${c.seconds} s, ${c.requestsPerRun} requests a run; worker 1 ran ${c.perWorker[0]}, worker 2 ran ${c.perWorker[1]}; run twice: ${c.connectionsRunTwice}`,
    );
  console.log(twice ? `NOT CLEAN: ${twice} connections run twice or runs skipped` : 'no connection was run twice in any cycle');
  console.log(
    JSON.stringify({
      bench: 'scale',
      clients: CLIENTS,
      cores: os.availableParallelism(),
      data: { patients: PATIENTS, searchPatients: SEARCH_PATIENTS, searchResources: search.state.resources },
      one,
      three,
      ratio: { read: ratio('read'), create: ratio('create'), search: ratio('search') },
      sync: {
        system: def.name,
        connections: N,
        years: YEARS,
        connectSeconds: round(connectS, 1),
        firstSyncs: { seconds: round(firstS, 1), succeeded: firsts.succeeded, created: firsts.created },
        cycles,
      },
      failed,
    }),
  );
} catch (err) {
  console.error(`FAILED ${(err as Error).stack ?? err}`);
  failed = Math.max(failed, 1);
} finally {
  await stopAll();
}
process.exit(failed ? 1 : 0);
