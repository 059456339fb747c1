/**
 * A first sync of one very large record, by a worker process of its own: its time, its pace, and
 * the worker's resident memory throughout (which must stay under 150 MB: the sync holds a page at a
 * time, not the record).
 *
 * A server as `npm start` runs it, with its sandbox systems and no workers of its own
 * (SYNC_WORKERS=false). The sandbox makes one patient with about --resources resources (mostly
 * Observations across categories, with their Encounters; POST /admin/sandbox/{name}/big-patient),
 * an app user connects as that patient through the real flow (connect URL, sign-in and consent, the
 * callback, which queues the first sync), and one `npx tributary worker` beside the server
 * (OUTBOUND_ALLOW naming the server's loopback port, as an operator would), started before and
 * idle until then, takes it. Every 100 ms the worker's VmRSS is read from /proc/<pid>/status: its
 * idle figure (what the process holds before any run) and the run's maximum are reported. The
 * run's time is its own (started_at to finished_at, GET /admin/sync?since=); then one JSON line.
 *
 *   npx node bench/sync-first.ts [--resources 50000] [--system epic|lakeside|...] [--worker-node-args='--max-old-space-size=160']
 *
 * Epic by default, Lakeside where there is no Epic. The worker runs as `npx tributary worker` does
 * (the Node flags of bin/tributary.ts's first line) unless --worker-node-args gives others ('' for none).
 *
 * At the Epic-like `epic` the sync fans Observation out by category and some of the record is
 * refused (categories and types Epic does not grant), so fewer resources arrive than were made;
 * at `lakeside` all of them do.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildApp } from '../src/app.ts';
import { configuredKey } from '../src/auth/vault.ts';
import { loadConfig } from '../src/config.ts';
import { runningEmbeddedUrl } from '../src/db/embedded.ts';
import { makeBigPatient, type BigPatient } from '../src/sandbox/big.ts';
import { DEFAULT_SANDBOXES } from '../src/sandbox/systems.ts';
import { benchApp, connectUser } from './connect.ts';
import { quantile, readRssMB, round, runsSince, spawnServer, spawnWorker, type RunsSummary } from './server.ts';

const { values: args } = parseArgs({
  options: {
    resources: { type: 'string', default: '50000' },
    system: { type: 'string' },
    'worker-node-args': { type: 'string' },
  },
});
const RESOURCES = Math.max(100, Math.floor(Number(args.resources)) || 50_000);
const RSS_LIMIT_MB = 150;
const SAMPLE_MS = 100;
// Epic's where it is served, else Lakeside.
const def = DEFAULT_SANDBOXES.find((d) => d.name === (args.system ?? (DEFAULT_SANDBOXES.some((x) => x.name === 'epic') ? 'epic' : 'lakeside')));
if (!def) throw new Error(`--system is one of ${DEFAULT_SANDBOXES.map((d) => d.name).join(', ')}`);
const ADMIN_KEY = `bench-${crypto.randomUUID()}`;
Object.assign(process.env, { ADMIN_KEY, SANDBOXES: 'true', SYNC_WORKERS: 'false', FHIR_AUTH: 'required' });

const server = await spawnServer(fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-sync-first-')), { remove: true, readyTimeoutMs: 120_000 });
const base = server.base;
const adminHeaders = { authorization: `Bearer ${ADMIN_KEY}` };

/**
 * The sandbox's big patient (made once; a sandbox still loading answers 503, and is asked again).
 * Where the server has no big-patient route, it is made here, as that route makes it
 * (src/sandbox/big.ts), in the server's database.
 */
async function bigPatient(): Promise<BigPatient> {
  for (let i = 0; i < 600; i++) {
    const res = await fetch(`${base}/admin/sandbox/${def!.name}/big-patient`, {
      method: 'POST',
      headers: { ...adminHeaders, 'content-type': 'application/json' },
      body: JSON.stringify({ resources: RESOURCES }),
    });
    if (res.status === 200 || res.status === 201) return res.json() as Promise<BigPatient>;
    if (res.status === 404 && !(await res.text()).includes('No sandbox system')) return bigPatientHere();
    if (res.status !== 503) throw new Error(`big-patient answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error('the sandbox was still loading after 5 minutes');
}
async function bigPatientHere(): Promise<BigPatient> {
  const config = loadConfig({ ...process.env, TRIBUTARY_DATA_DIR: server.dataDir, EMBEDDED_PG_PORT: String(server.pgPort) });
  const databaseUrl = runningEmbeddedUrl(config.dataDir, config.embeddedPgPort)!;
  const app = await buildApp(
    { ...config, databaseUrl, encryptionKey: configuredKey(config), sandboxes: false, syncWorkers: false, logLevel: 'warn' },
    { logger: false },
  );
  await app.ready();
  try {
    const { rows } = await app.pg.query<{ app_id: number }>('SELECT app_id FROM trb_sandbox WHERE name = $1', [def!.name]);
    return await makeBigPatient({ pool: app.pg, bulk: app.fhir, auth: app.auth }, rows[0].app_id, { resources: RESOURCES, idPrefix: def!.idPrefix });
  } finally {
    await app.close();
  }
}

let worker: ChildProcess | undefined;
try {
  const made0 = Date.now();
  const big = await bigPatient();
  const madeS = (Date.now() - made0) / 1000;
  console.log(`${def.title}: a patient with ${big.resources} resources made in ${round(madeS, 1)} s`);
  const app = await benchApp(base, ADMIN_KEY);

  // The worker first, idle: what it holds before any run (the server's plugins, FHIR definitions).
  const nodeArgs = args['worker-node-args'] === undefined ? undefined : args['worker-node-args'].split(' ').filter(Boolean);
  const spawned = await spawnWorker(server, { OUTBOUND_ALLOW: `localhost:${server.port}`, SYNC_INTERVAL_MINUTES: '1440' }, nodeArgs);
  worker = spawned.child;
  const pid = spawned.pid;
  const samples: number[] = [];
  const sampler = setInterval(() => {
    const mb = readRssMB(pid);
    if (mb !== null) samples.push(mb);
  }, SAMPLE_MS);
  await new Promise((r) => setTimeout(r, 5000));
  const idle = samples.slice(-20);
  const idleRss = idle.reduce((a, b) => a + b, 0) / idle.length;
  console.log(`worker idle (5 s after it was running): RSS ${round(idleRss, 1)} MB`);

  // The connection's first sync, queued at the callback, is the worker's to take.
  const since = new Date().toISOString();
  const fromSample = samples.length;
  await connectUser(base, app, 'big-0', def.directoryId, big.username, big.password);
  let done: RunsSummary | undefined;
  try {
    for (const deadline = Date.now() + 1800_000; Date.now() < deadline;) {
      const s = await runsSince(base, ADMIN_KEY, since);
      if (s.succeeded + s.failed + s.needs_reauth >= 1) {
        done = s;
        break;
      }
      // (A worker that ran out of memory ends by a signal: exitCode stays null.)
      if (worker.exitCode !== null || worker.signalCode !== null)
        throw new Error(`the worker exited (${worker.exitCode ?? worker.signalCode}) before the run finished`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    clearInterval(sampler);
  }
  if (!done) throw new Error('the first sync did not finish within 30 minutes');
  const seconds = (Date.parse(done.last_finished_at!) - Date.parse(done.first_started_at!)) / 1000;
  const maxRss = Math.max(...samples);
  const runSamples = samples.slice(fromSample).sort((a, b) => a - b);
  const status = done.succeeded === 1 ? 'succeeded' : done.failed ? 'failed' : 'needs_reauth';
  console.log(
    `first sync ${status}: ${done.fetched} fetched, ${done.created} created, ${done.updated} updated, ${done.requests} requests, in ${round(seconds, 1)} s (${Math.round(done.created / seconds)} resources/s)` +
      (done.errors.length ? `; error: ${done.errors[0].error.slice(0, 300)}` : ''),
  );
  console.log(
    `worker RSS: max ${round(maxRss, 1)} MB over ${samples.length} samples every ${SAMPLE_MS} ms (limit ${RSS_LIMIT_MB} MB): ${maxRss < RSS_LIMIT_MB ? 'within' : 'OVER'}; idle ${round(idleRss, 1)} MB, so the run added at most ${round(maxRss - idleRss, 1)} MB; during the run p50 ${round(quantile(runSamples, 0.5), 1)} MB, p90 ${round(quantile(runSamples, 0.9), 1)} MB`,
  );
  console.log(
    JSON.stringify({
      bench: 'sync-first',
      system: def.name,
      resourcesMade: big.resources,
      status,
      fetched: done.fetched,
      created: done.created,
      requests: done.requests,
      seconds: round(seconds, 1),
      resourcesPerSecond: Math.round(done.created / seconds),
      maxRssMB: round(maxRss, 1),
      idleRssMB: round(idleRss, 1),
      runRssP50MB: round(quantile(runSamples, 0.5), 1),
      rssLimitMB: RSS_LIMIT_MB,
      samples: samples.length,
    }),
  );
  if (maxRss >= RSS_LIMIT_MB) process.exitCode = 1;
} finally {
  if (worker && worker.exitCode === null && worker.signalCode === null) {
    const exited = new Promise((r) => worker!.once('exit', r));
    worker.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
  }
  await server.stop();
}
