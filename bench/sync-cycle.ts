/**
 * One sync cycle of many connections whose sources have not changed, by one worker process.
 *
 * A server as `npm start` runs it, with its sandbox systems (SANDBOX_YEARS of history a patient;
 * the simulated vendors keep their own) and no workers of its own (SYNC_WORKERS=false); beside it
 * one `npx tributary worker` with the default settings (SYNC_CONCURRENCY, SYNC_SYSTEM_CONCURRENCY,
 * SYNC_SYSTEM_RATE, SYNC_FULL_MINUTES unless set). Then:
 *   1. --connections app users connect through the real flow (connect URL, the sandbox's sign-in
 *      and consent, the callback), each as one of the system's patients in turn;
 *   2. their first syncs, queued at the callback, run in the worker (timed, for the record);
 *   3. --cycles times: POST /admin/sync queues every connection at once, and the cycle lasts until
 *      the last of its runs has finished (GET /admin/sync?since=). Nothing changed at the source,
 *      so every run must find nothing new. These are the cycles between full fetches: a type the
 *      system lists no `_lastUpdated` for is fetched whole every SYNC_FULL_MINUTES and skipped in
 *      between, so they cost what the increments cost;
 *   4. --full-cycles times (default 1 at a simulated vendor, 0 at north-valley and lakeside): the
 *      same, with the worker restarted under SYNC_FULL_MINUTES=0, so that every type is fetched
 *      whole, as once every SYNC_FULL_MINUTES.
 * It reports each cycle's duration, requests and runs, and how many connections the worker keeps in
 * sync per 2-minute window at that pace (and blended: SYNC_FULL_MINUTES / SYNC_INTERVAL_MINUTES - 1
 * cheap cycles to one full one), then one JSON line.
 *
 * At a system with a calls-a-minute limit (the eClinicalWorks-like `ecw`: 250, token calls counted,
 * a 429 blocks the rest of the minute), each phase also reports the 429s the system answered (the
 * simulator's count) and the runs that failed on one, and the JSON line the largest number of
 * connections whose requests fit the limit at the sync's cadence (see `fitUnderLimit`).
 *
 *   npx node bench/sync-cycle.ts [--connections 1000] [--system north-valley|lakeside|epic|ecw|...] [--years 1] [--cycles 2] [--full-cycles 1]
 *
 * North Valley serves Patient/$everything (one request a run when nothing changed); Lakeside does
 * not, so each run searches every type (about 20 requests). The Epic-like `epic` lists
 * `_lastUpdated` on DocumentReference only and has no $everything: its cheap cycles ask little, its
 * full ones fan Observation out by category.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_SANDBOXES } from '../src/sandbox/systems.ts';
import { benchApp, connectUser, sandboxPatients } from './connect.ts';
import { round, runsFinished, spawnServer, spawnWorker, type RunsSummary } from './server.ts';

const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '1000' },
    system: { type: 'string', default: 'north-valley' },
    years: { type: 'string', default: '1' },
    cycles: { type: 'string', default: '2' },
    'full-cycles': { type: 'string' },
  },
});
const N = Math.max(1, Math.floor(Number(args.connections)) || 1000);
const CYCLES = Math.max(0, Math.floor(Number(args.cycles)) || 0);
const YEARS = Math.max(1, Math.floor(Number(args.years)) || 1);
const TARGET_S = 60;
/** Of a system's stated limit, the share the sync's limiter keeps to (src/sync/rate-limit.ts). */
const LIMITER_HEADROOM = 0.9;
const CONNECT_CONCURRENCY = 8;
const def = DEFAULT_SANDBOXES.find((d) => d.name === args.system);
if (!def) throw new Error(`--system is one of ${DEFAULT_SANDBOXES.map((d) => d.name).join(', ')}`);
const isVendor = 'vendor' in def && !!(def as { vendor?: unknown }).vendor;
const FULL_CYCLES = Math.max(0, Math.floor(Number(args['full-cycles'] ?? (isVendor ? 1 : 0))) || 0);
const patients = sandboxPatients(def, YEARS);
const ADMIN_KEY = `bench-${crypto.randomUUID()}`;
// The sync's cadence, as the worker will read it (src/config.ts's defaults unless set).
const INTERVAL_MINUTES = Number(process.env.SYNC_INTERVAL_MINUTES ?? 2);
const FULL_MINUTES = Number(process.env.SYNC_FULL_MINUTES ?? 60);
// Users are made faster than USER_API_RATE_LIMIT's default allows an app.
Object.assign(process.env, {
  ADMIN_KEY,
  USER_API_RATE_LIMIT: '100000',
  SANDBOXES: 'true',
  SANDBOX_YEARS: String(YEARS),
  SYNC_WORKERS: 'false',
  FHIR_AUTH: 'required',
});

// The system's own calls-a-minute limit (the eClinicalWorks-like practice's 250).
const LIMIT = (def as { rateLimitPerMinute?: number }).rateLimitPerMinute ?? (def.name === 'ecw' ? 250 : undefined);
// At a limited system the server logs every request (LOG_LEVEL=info: one line each, its status),
// so that the 429s it answered can be counted.
const server = await spawnServer(fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-sync-cycle-')), {
  remove: true,
  readyTimeoutMs: 120_000,
  ...(LIMIT ? { logLevel: 'info', keepLines: true } : {}),
});
const base = server.base;
const adminHeaders = { authorization: `Bearer ${ADMIN_KEY}` };
const finished = (since: string, n: number, timeoutS: number) => runsFinished(base, ADMIN_KEY, since, n, timeoutS);

/**
 * The 429s the system has answered since the server started: the simulator's own count where it
 * keeps one (GET /admin/sandbox/{name}/rate-limit), else the server's request lines with status
 * 429; null at a system without a limit.
 */
async function throttledSoFar(): Promise<number | null> {
  if (!LIMIT) return null;
  const res = await fetch(`${base}/admin/sandbox/${def!.name}/rate-limit`, { headers: adminHeaders }).catch(() => undefined);
  const body = res?.ok ? ((await res.json()) as { throttled?: number; rejected?: number }) : undefined;
  if (typeof (body?.throttled ?? body?.rejected) === 'number') return (body!.throttled ?? body!.rejected)!;
  return server.lines.filter((l) => l.includes('"status":429')).length;
}
/** Runs of a summary that failed on a 429 (their error names it). */
const failedOn429 = (s: RunsSummary) => s.errors.filter((e) => /429|throttl|rate/i.test(e.error)).reduce((n, e) => n + e.runs, 0);

let worker: ChildProcess | undefined;
/** One `npx tributary worker` beside the server (as npx runs it: bench/server.ts), with `env` over the bench's own. */
async function startWorker(env: Record<string, string> = {}): Promise<ChildProcess> {
  // The schedule would queue connections again while the cycles run: a day's interval keeps it out.
  // It serves no sandboxes of its own, so it names the server's, which are on loopback, in its
  // outbound allow-list, as an operator would.
  return (await spawnWorker(server, { OUTBOUND_ALLOW: `localhost:${server.port}`, SYNC_INTERVAL_MINUTES: '1440', ...env })).child;
}
async function stopWorker(): Promise<void> {
  if (!worker || worker.exitCode !== null || worker.signalCode !== null) return;
  const exited = new Promise((r) => worker!.once('exit', r));
  worker.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
}

interface Cycle {
  kind: 'cheap' | 'full';
  seconds: number;
  requests: number;
  requestsPerRun: number;
  perWindow: number;
  created: number;
  updated: number;
  failed: number;
  throttled: number | null;
  failedOn429: number;
}

/** `count` cycles of every connection at once (POST /admin/sync), each until its last run finished. */
async function cycles(kind: Cycle['kind'], count: number): Promise<Cycle[]> {
  const out: Cycle[] = [];
  for (let c = 1; c <= count; c++) {
    const t0 = new Date();
    const throttled0 = await throttledSoFar();
    const queued = (await (await fetch(`${base}/admin/sync`, { method: 'POST', headers: adminHeaders })).json()) as { queued: number };
    const done = await finished(t0.toISOString(), N, 3600);
    const seconds = (Date.parse(done.last_finished_at!) - t0.getTime()) / 1000;
    const throttled1 = await throttledSoFar();
    const throttled = throttled0 === null || throttled1 === null ? null : throttled1 - throttled0;
    const clean = done.succeeded === N && !done.created && !done.updated;
    const perWindow = Math.floor((N / seconds) * 120);
    out.push({
      kind,
      seconds: round(seconds, 1)!,
      requests: done.requests,
      requestsPerRun: round(done.requests / N, 1)!,
      perWindow,
      created: done.created,
      updated: done.updated,
      failed: N - done.succeeded,
      throttled,
      failedOn429: failedOn429(done),
    });
    console.log(
      `${kind} cycle ${c}: ${queued.queued} connections queued, ${done.succeeded} synced in ${round(seconds, 1)} s (target < ${TARGET_S} s); ${done.requests} requests to the system (${round(done.requests / N, 1)} a run), ${done.fetched} resources fetched again, ${done.created} created, ${done.updated} changed; at this pace one worker keeps ${perWindow} connections in sync per 2-minute window` +
        (throttled === null ? '' : `; the system answered ${throttled} 429s, ${failedOn429(done)} runs failed on one`),
    );
    if (!clean) console.log(`  NOT CLEAN: ${JSON.stringify({ ...done, errors: done.errors.slice(0, 3) })}`);
  }
  return out;
}

/**
 * The most connections whose requests fit a calls-a-minute limit at the sync's cadence, from the
 * requests a cheap run and a full run took (token calls included: they go through the session):
 * - spread: the connections' full fetches fall at different minutes of the hour (as they drift
 *   apart), so a connection asks, a minute, (cheap × (F − 1) + full) / F / interval, F being
 *   SYNC_FULL_MINUTES / SYNC_INTERVAL_MINUTES;
 * - together: every full fetch falls in the same cycle (the first syncs were made together), and
 *   that cycle must still end within one interval: full × N ≤ limit × interval.
 * The limit is the share of the stated one the sync keeps to (src/sync/rate-limit.ts: 90 %).
 */
function fitUnderLimit(statedPerMinute: number, cheap: number, full: number): { spread: number; together: number } {
  const limitPerMinute = statedPerMinute * LIMITER_HEADROOM;
  const F = Math.max(1, FULL_MINUTES / INTERVAL_MINUTES);
  const perMinute = (cheap * (F - 1) + full) / F / INTERVAL_MINUTES;
  return { spread: Math.floor(limitPerMinute / perMinute), together: Math.floor((limitPerMinute * INTERVAL_MINUTES) / full) };
}

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
  console.log(
    `${N} users connected to ${def.title} through the connect flow in ${round(connectS, 1)} s (${round(N / connectS, 1)} a second, ${CONNECT_CONCURRENCY} at a time)`,
  );

  // 2. One worker process; it takes the first syncs queued at the callbacks.
  const since0 = new Date(connectStarted - 1000).toISOString();
  const throttledAtFirst = await throttledSoFar();
  worker = await startWorker();
  const workerStarted = Date.now();
  const first = await finished(since0, N, 3600);
  const firstS = (Date.parse(first.last_finished_at!) - workerStarted) / 1000;
  const throttledFirst = throttledAtFirst === null ? null : (await throttledSoFar())! - throttledAtFirst;
  console.log(
    `first syncs: ${first.succeeded} succeeded, ${first.failed + first.needs_reauth} not, ${first.created} resources created, ${first.requests} requests (${round(first.requests / N, 1)} a run), in ${round(firstS, 1)} s from the worker's start (${Math.round(first.created / firstS)} resources/s)` +
      (throttledFirst === null ? '' : `; the system answered ${throttledFirst} 429s, ${failedOn429(first)} runs failed on one`),
  );
  if (first.succeeded !== N) console.log(`  NOT ALL SUCCEEDED: ${JSON.stringify({ ...first, errors: first.errors.slice(0, 3) })}`);

  // 3. Cycles with nothing new at the source, as the sync's policy makes them between full fetches.
  const cheap = await cycles('cheap', CYCLES);
  // 4. Cycles forced full: every type fetched whole, as once every SYNC_FULL_MINUTES.
  let full: Cycle[] = [];
  if (FULL_CYCLES) {
    await stopWorker();
    worker = await startWorker({ SYNC_FULL_MINUTES: '0' });
    full = await cycles('full', FULL_CYCLES);
  }
  const all = [...cheap, ...full];
  const best = (cs: Cycle[]) => (cs.length ? Math.min(...cs.map((c) => c.seconds)) : null);
  const mean = (cs: Cycle[], f: (c: Cycle) => number) => (cs.length ? cs.reduce((n, c) => n + f(c), 0) / cs.length : null);
  // Blended: F − 1 cheap cycles to a full one, F = SYNC_FULL_MINUTES / SYNC_INTERVAL_MINUTES.
  const F = Math.max(1, FULL_MINUTES / INTERVAL_MINUTES);
  const [tCheap, tFull] = [best(cheap), best(full)];
  const blendedPerWindow = tCheap !== null && tFull !== null ? Math.floor((N / ((tCheap * (F - 1) + tFull) / F)) * 120) : null;
  if (blendedPerWindow !== null)
    console.log(
      `blended (${F - 1} cheap cycles to one full, SYNC_FULL_MINUTES=${FULL_MINUTES}): one worker keeps ${blendedPerWindow} connections in sync per 2-minute window`,
    );
  const limit = LIMIT;
  const [rCheap, rFull] = [mean(cheap, (c) => c.requestsPerRun), mean(full, (c) => c.requestsPerRun) ?? first.requests / N];
  const fit = limit && rCheap !== null ? fitUnderLimit(limit, rCheap, rFull) : undefined;
  if (fit)
    console.log(
      `under ${limit} calls a minute (the sync keeps to ${limit! * LIMITER_HEADROOM}): ${fit.spread} connections fit with their full fetches spread over the hour (${round(rCheap, 1)} requests a cheap run, ${round(rFull, 1)} a full one, every ${INTERVAL_MINUTES} and ${FULL_MINUTES} minutes); ${fit.together} when every full fetch falls in one ${INTERVAL_MINUTES}-minute cycle`,
    );
  console.log(
    JSON.stringify({
      bench: 'sync-cycle',
      system: def.name,
      everything: def.everything,
      connections: N,
      years: YEARS,
      connectSeconds: round(connectS, 1),
      firstSync: {
        seconds: round(firstS, 1),
        created: first.created,
        requests: first.requests,
        succeeded: first.succeeded,
        throttled: throttledFirst,
      },
      cycles: all,
      bestCycleSeconds: best(cheap) ?? best(full),
      bestFullCycleSeconds: best(full),
      blendedPerWindow,
      limitPerMinute: limit ?? null,
      fitUnderLimit: fit ?? null,
      targetSeconds: TARGET_S,
      settings: {
        SYNC_CONCURRENCY: process.env.SYNC_CONCURRENCY ?? 'default',
        SYNC_SYSTEM_CONCURRENCY: process.env.SYNC_SYSTEM_CONCURRENCY ?? 'default',
        SYNC_SYSTEM_RATE: process.env.SYNC_SYSTEM_RATE ?? 'default',
        SYNC_FULL_MINUTES: FULL_MINUTES,
        SYNC_INTERVAL_MINUTES: INTERVAL_MINUTES,
      },
    }),
  );
} finally {
  // The worker first (it holds connections to the server's PostgreSQL), then the server.
  await stopWorker();
  await server.stop();
}
