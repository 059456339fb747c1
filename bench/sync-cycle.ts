/**
 * One sync cycle of many connections whose sources have not changed, by one worker process.
 *
 * A server as `npm start` runs it, with its sandbox systems (SANDBOX_YEARS of history a patient)
 * and no workers of its own (SYNC_WORKERS=false); beside it one `npx tributary worker` with the
 * default settings (SYNC_CONCURRENCY, SYNC_SYSTEM_CONCURRENCY, SYNC_SYSTEM_RATE unless set). Then:
 *   1. --connections app users connect through the real flow (connect URL, the sandbox's sign-in
 *      and consent, the callback), each as one of the system's patients in turn;
 *   2. their first syncs, queued at the callback, run in the worker (timed, for the record);
 *   3. --cycles times: POST /admin/sync queues every connection at once, and the cycle lasts until
 *      the last of its runs has finished (GET /admin/sync?since=). Nothing changed at the source,
 *      so every run must find nothing new.
 * It reports each cycle's duration, requests and runs, and how many connections the worker keeps in
 * sync per 2-minute window at that pace, then one JSON line.
 *
 *   npx node bench/sync-cycle.ts [--connections 1000] [--system north-valley|lakeside] [--years 1] [--cycles 2]
 *
 * North Valley serves Patient/$everything (one request a run when nothing changed); Lakeside does
 * not, so each run searches every type (about 20 requests).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { generateSystem } from '../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES } from '../src/sandbox/systems.ts';
import { benchApp, connectUser } from './connect.ts';
import { REPO, round, spawnServer } from './server.ts';

const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '1000' },
    system: { type: 'string', default: 'north-valley' },
    years: { type: 'string', default: '1' },
    cycles: { type: 'string', default: '2' },
  },
});
const N = Math.max(1, Math.floor(Number(args.connections)) || 1000);
const CYCLES = Math.max(1, Math.floor(Number(args.cycles)) || 2);
const YEARS = Math.max(1, Math.floor(Number(args.years)) || 1);
const TARGET_S = 60;
const CONNECT_CONCURRENCY = 8;
const def = DEFAULT_SANDBOXES.find((d) => d.name === args.system);
if (!def) throw new Error(`--system is one of ${DEFAULT_SANDBOXES.map((d) => d.name).join(', ')}`);
const patients = generateSystem({ seed: def.seed, patients: def.patients, idPrefix: def.idPrefix, systemName: def.title, years: YEARS }).patients;
const ADMIN_KEY = `bench-${crypto.randomUUID()}`;
// Users are made faster than USER_API_RATE_LIMIT's default allows an app.
Object.assign(process.env, { ADMIN_KEY, USER_API_RATE_LIMIT: '100000', SANDBOXES: 'true', SANDBOX_YEARS: String(YEARS), SYNC_WORKERS: 'false', FHIR_AUTH: 'required' });

interface RunsSummary {
  runs: number;
  running: number;
  succeeded: number;
  failed: number;
  needs_reauth: number;
  first_started_at: string | null;
  last_finished_at: string | null;
  fetched: number;
  created: number;
  updated: number;
  unchanged: number;
  requests: number;
  errors: { error: string; runs: number }[];
}

const server = await spawnServer(fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-sync-cycle-')), { remove: true, readyTimeoutMs: 120_000 });
const base = server.base;
const adminHeaders = { authorization: `Bearer ${ADMIN_KEY}` };
const runsSince = async (since: string): Promise<RunsSummary> => (await fetch(`${base}/admin/sync?since=${encodeURIComponent(since)}`, { headers: adminHeaders })).json() as Promise<RunsSummary>;

/** Polls until `n` runs started since `since` have finished; their summary. */
async function finished(since: string, n: number, timeoutS: number): Promise<RunsSummary> {
  const deadline = Date.now() + timeoutS * 1000;
  let last: RunsSummary | undefined;
  let shown = 0;
  while (Date.now() < deadline) {
    last = await runsSince(since);
    const done = last.succeeded + last.failed + last.needs_reauth;
    if (done >= n) return last;
    if (process.stderr.isTTY && done - shown >= n / 20) {
      process.stderr.write(`  ${done}/${n} runs finished\r`);
      shown = done;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`only ${JSON.stringify(last)} of ${n} runs finished in ${timeoutS} s`);
}

let worker: ReturnType<typeof spawn> | undefined;
try {
  const app = await benchApp(base, ADMIN_KEY);
  // 1. Connections, through the real flow.
  const connectStarted = Date.now();
  let made = 0;
  await Promise.all(
    Array.from({ length: CONNECT_CONCURRENCY }, async (_, lane) => {
      for (let i = lane; i < N; i += CONNECT_CONCURRENCY) {
        const p = patients[i % patients.length];
        await connectUser(base, app, `cycle-${i}`, def.directoryId, p.username, p.password);
        if (++made % 100 === 0) process.stderr.write(`  ${made}/${N} connected\n`);
      }
    }),
  );
  const connectS = (Date.now() - connectStarted) / 1000;
  console.log(`${N} users connected to ${def.title} through the connect flow in ${round(connectS, 1)} s (${round(N / connectS, 1)} a second, ${CONNECT_CONCURRENCY} at a time)`);

  // 2. One worker process; it takes the first syncs queued at the callbacks.
  const since0 = new Date(connectStarted - 1000).toISOString();
  worker = spawn(path.join(REPO, 'node_modules', '.bin', 'node'), [path.join(REPO, 'bin', 'tributary.ts'), 'worker'], {
    cwd: REPO,
    // The schedule would queue connections again while the cycles run: a day's interval keeps it out.
    // It serves no sandboxes of its own (SANDBOXES=false), so it names the server's, which are on
    // loopback, in its outbound allow-list, as an operator would.
    env: { ...process.env, PORT: String(server.port), TRIBUTARY_DATA_DIR: server.dataDir, EMBEDDED_PG_PORT: String(server.pgPort), SANDBOXES: 'false', OUTBOUND_ALLOW: `localhost:${server.port}`, LOG_LEVEL: 'warn', SYNC_INTERVAL_MINUTES: '1440' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const workerStarted = Date.now();
  const first = await finished(since0, N, 3600);
  const firstS = (Date.parse(first.last_finished_at!) - workerStarted) / 1000;
  console.log(
    `first syncs: ${first.succeeded} succeeded, ${first.failed + first.needs_reauth} not, ${first.created} resources created, in ${round(firstS, 1)} s from the worker's start (${Math.round(first.created / firstS)} resources/s)`,
  );
  if (first.succeeded !== N) throw new Error(`first syncs did not all succeed: ${JSON.stringify(first)}`);

  // 3. Cycles with nothing new at the source.
  const cycles: { seconds: number; requests: number; perWindow: number; created: number; updated: number }[] = [];
  for (let c = 1; c <= CYCLES; c++) {
    const t0 = new Date();
    const queued = (await (await fetch(`${base}/admin/sync`, { method: 'POST', headers: adminHeaders })).json()) as { queued: number };
    const done = await finished(t0.toISOString(), N, 1800);
    const seconds = (Date.parse(done.last_finished_at!) - t0.getTime()) / 1000;
    if (done.succeeded !== N || done.created || done.updated) throw new Error(`cycle ${c} was not clean: ${JSON.stringify(done)}`);
    const perWindow = Math.floor((N / seconds) * 120);
    cycles.push({ seconds: round(seconds, 1)!, requests: done.requests, perWindow, created: done.created, updated: done.updated });
    console.log(
      `cycle ${c}: ${queued.queued} connections queued, all ${done.succeeded} synced in ${round(seconds, 1)} s (target < ${TARGET_S} s); ${done.requests} requests to the system (${round(done.requests / N, 1)} a run), ${done.fetched} resources fetched again, none created or changed; at this pace one worker keeps ${perWindow} connections in sync per 2-minute window`,
    );
  }
  const best = Math.min(...cycles.map((c) => c.seconds));
  console.log(
    JSON.stringify({
      bench: 'sync-cycle',
      system: def.name,
      everything: def.everything,
      connections: N,
      years: YEARS,
      connectSeconds: round(connectS, 1),
      firstSync: { seconds: round(firstS, 1), created: first.created },
      cycles,
      bestCycleSeconds: best,
      targetSeconds: TARGET_S,
      settings: { SYNC_CONCURRENCY: process.env.SYNC_CONCURRENCY ?? 'default', SYNC_SYSTEM_CONCURRENCY: process.env.SYNC_SYSTEM_CONCURRENCY ?? 'default', SYNC_SYSTEM_RATE: process.env.SYNC_SYSTEM_RATE ?? 'default' },
    }),
  );
} finally {
  // The worker first (it holds connections to the server's PostgreSQL), then the server.
  if (worker && worker.exitCode === null) {
    const exited = new Promise((r) => worker!.once('exit', r));
    worker.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
  }
  await server.stop();
}
