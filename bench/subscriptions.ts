/**
 * Subscriptions benchmark: what 1,000 active subscriptions cost the write path, and how soon a
 * notification reaches its receiver after the write commits.
 *
 *   npx node bench/subscriptions.ts [--runs 2] [--repeat 3] [--concurrency 4] [--subscriptions 1000] [--dir path]
 *
 * Each run starts two fresh servers (as bench/ingest.ts does, FHIR_AUTH off, the workers on) and
 * loads the Synthea bundles of ../shared/synthea as transactions `--repeat` times, 4 in flight: one server with no
 * subscription, one with `--subscriptions` active ones (the runs alternate, so the machine's drift
 * falls on both). The subscriptions are the app's (they hear of every write): most on an
 * Observation code that is rare or absent (filed by that code), some on other types and on
 * references and strings (looked at for every write of their type), a few on codes the load holds
 * (they notify, to a receiver in this process), and one latency probe. While the load runs, and
 * again once it is done, the probe's Observation is written every 100 ms and its notification
 * timed: from the write's answer (the commit is before it) to the receiver.
 *
 * Prints resources/s without and with the subscriptions and their ratio, the server's CPU per 1,000
 * resources both ways (steadier than resources/s on a machine shared with other work), the
 * notifications received, the probe's latency p50 / p99 under load and idle; then one JSON line.
 * Exits 1 when the ratio is past 10% or a latency p50 past 1 s.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO, cpuMeter, describeCores, quantile, round, startServer, type BenchServer, type CoresBusy } from './server.ts';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '4' },
    repeat: { type: 'string', default: '3' },
    subscriptions: { type: 'string', default: '1000' },
    dir: { type: 'string', default: path.resolve(REPO, '..', 'shared', 'synthea') },
  },
});
const clamp = (v: string, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.floor(Number(v)) || lo));
const runs = clamp(args.runs, 1, 10);
const concurrency = clamp(args.concurrency, 1, 64);
const repeat = clamp(args.repeat, 1, 100);
const SUBS = clamp(args.subscriptions, 1, 100_000);
const LOINC = 'http://loinc.org';
const PROBE = { system: 'https://bench.tributary.dev/probe', code: 'latency' };
const FHIR_JSON = 'application/fhir+json';

const files = fs
  .readdirSync(args.dir)
  .filter((f) => f.endsWith('.json'))
  .sort();
if (!files.length) throw new Error(`No *.json bundles in ${args.dir}`);
const bundles: Buffer<ArrayBuffer>[] = files.map((f) => fs.readFileSync(path.join(args.dir, f)));
const resourcesPerPass = bundles.reduce((n, b) => n + (JSON.parse(b.toString('utf8')).entry ?? []).length, 0);

/** Observation codes of the load by how often they occur: the rare ones notify a little. */
const codeCounts = new Map<string, number>();
for (const b of bundles) {
  for (const e of JSON.parse(b.toString('utf8')).entry ?? []) {
    const r = e.resource;
    if (r?.resourceType !== 'Observation') continue;
    for (const c of r.code?.coding ?? []) if (c.system === LOINC) codeCounts.set(c.code, (codeCounts.get(c.code) ?? 0) + 1);
  }
}
// Codes that notify, about 1% of the load between them (apps watch for a few things, not everything).
const notifying: string[] = [];
let expected = 0;
for (const [code, n] of [...codeCounts].sort((a, b) => a[1] - b[1])) {
  if (expected + n > resourcesPerPass * 0.01 || notifying.length >= 20) break;
  notifying.push(code);
  expected += n;
}

/** The subscriptions: `SUBS` of them, the probe among them. */
function subscriptionsFor(): { criteria: string; payload?: string }[] {
  const out: { criteria: string; payload?: string }[] = [{ criteria: `Observation?code=${PROBE.system}|${PROBE.code}`, payload: FHIR_JSON }];
  for (const code of notifying) out.push({ criteria: `Observation?code=${LOINC}|${code}` });
  const scanned = Math.floor(SUBS * 0.1);
  for (let i = 0; out.length < SUBS && i < scanned; i++) {
    // Looked at for every write of their type: a reference, a string, a date.
    out.push({ criteria: [`Observation?subject=Patient/nobody-${i}`, `Patient?name=Zzyzx${i}`, `Encounter?date=gt2200-01-0${(i % 9) + 1}`][i % 3] });
  }
  for (let i = 0; out.length < SUBS; i++) out.push({ criteria: `Observation?code=${LOINC}|99${String(i).padStart(4, '0')}-0` });
  return out;
}

/** A receiver of notifications in this process: counts them, and times the probe's. */
async function receiver() {
  let received = 0;
  const arrived = new Map<string, number>();
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const at = performance.now();
      received++;
      const m = /\/Observation\/([^/?]+)$/.exec(req.url ?? '');
      if (m) arrived.set(m[1], at);
      res.writeHead(200).end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`, arrived, received: () => received, close: () => server.close() };
}

async function fhir(base: string, method: string, p: string, body?: Buffer<ArrayBuffer> | object): Promise<{ status: number; json: any }> {
  const res = await fetch(`${base}/fhir/r4${p}`, {
    method,
    headers: { accept: FHIR_JSON, ...(body ? { 'content-type': FHIR_JSON } : {}) },
    body: body === undefined ? undefined : Buffer.isBuffer(body) ? (body as Buffer<ArrayBuffer>) : JSON.stringify(body),
    signal: AbortSignal.timeout(300_000),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function subscribe(base: string, endpoint: string): Promise<number> {
  const subs = subscriptionsFor();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < subs.length) {
        const s = subs[next++];
        const res = await fhir(base, 'POST', '/Subscription', {
          resourceType: 'Subscription',
          status: 'requested',
          reason: 'bench',
          criteria: s.criteria,
          channel: { type: 'rest-hook', endpoint, ...(s.payload ? { payload: s.payload } : {}) },
        });
        if (res.status !== 201) throw new Error(`Subscription: ${res.status} ${JSON.stringify(res.json).slice(0, 300)}`);
      }
    }),
  );
  const until = Date.now() + 300_000;
  for (;;) {
    const active = (await fhir(base, 'GET', '/Subscription?status=active&_summary=count')).json.total as number;
    if (active >= subs.length) return active;
    if (Date.now() > until) throw new Error(`only ${active} of ${subs.length} subscriptions became active`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The load: every bundle once, `concurrency` in flight. Resources/s. */
async function ingest(base: string): Promise<{ rate: number; seconds: number }> {
  const queue = Array.from({ length: repeat }, () => bundles).flat();
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < queue.length) {
        const res = await fhir(base, 'POST', '', queue[next++]);
        if (res.status !== 200) throw new Error(`a bundle answered ${res.status}: ${JSON.stringify(res.json).slice(0, 300)}`);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { rate: (resourcesPerPass * repeat) / seconds, seconds };
}

/** Writes the probe's Observation every 100 ms until `stop` resolves; answers each latency (ms, answer -> receiver). */
async function probe(base: string, arrived: Map<string, number>, stop: Promise<unknown>, timed: boolean): Promise<number[]> {
  let done = false;
  void stop.then(() => (done = true));
  const answered = new Map<string, number>();
  while (!done) {
    const res = await fhir(base, 'POST', '/Observation', {
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [PROBE] },
    });
    answered.set(res.json.id, performance.now());
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!timed) return [];
  const until = Date.now() + 30_000;
  while ([...answered.keys()].some((id) => !arrived.has(id)) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  return [...answered].map(([id, at]) => (arrived.has(id) ? Math.max(0, arrived.get(id)! - at) : Infinity)).sort((a, b) => a - b);
}

interface Run {
  subscriptions: number;
  rate: number;
  seconds: number;
  cores: CoresBusy;
  notifications: number;
  loadLatency: number[];
  idleLatency: number[];
}

async function oneRun(withSubscriptions: boolean): Promise<Run> {
  // The receiver is on loopback: the outbound agent may reach it.
  process.env.OUTBOUND_ALLOW = '127.0.0.1';
  const server: BenchServer = await startServer();
  const r = await receiver();
  try {
    const active = withSubscriptions ? await subscribe(server.base, r.url) : 0;
    // Warm-up, not counted: the smallest bundle once.
    await fhir(
      server.base,
      'POST',
      '',
      bundles.reduce((a, b) => (b.length < a.length ? b : a)),
    );
    const before = r.received();
    const cpu = cpuMeter(server);
    const load = ingest(server.base);
    // The probe writes in both servers, so that both carry the same load; it is timed with the subscriptions only.
    const loadLatency = probe(server.base, r.arrived, load, withSubscriptions);
    const { rate, seconds } = await load;
    const cores = cpu.stop();
    const underLoad = await loadLatency;
    const idle = withSubscriptions ? await probe(server.base, r.arrived, new Promise((res) => setTimeout(res, 5000)), true) : [];
    return {
      subscriptions: active,
      rate,
      seconds,
      cores,
      notifications: r.received() - before,
      loadLatency: underLoad,
      idleLatency: idle,
    };
  } finally {
    r.close();
    await server.stop();
  }
}

const results: Run[] = [];
for (let i = 0; i < runs; i++) {
  // Alternating, so that the machine's drift falls on both.
  for (const withSubs of i % 2 === 0 ? [false, true] : [true, false]) {
    const run = await oneRun(withSubs);
    results.push(run);
    console.error(
      `run ${i + 1}: ${run.subscriptions} subscriptions: ${round(run.rate)} resources/s (${round(run.seconds, 1)} s), ${run.notifications} notifications; ${describeCores(run.cores)}`,
    );
  }
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const without = results.filter((r) => r.subscriptions === 0);
const withSubs = results.filter((r) => r.subscriptions > 0);
/**
 * CPU the server process spent per 1,000 resources (ms): where the matching is, and steadier than
 * resources/s when other work shares the machine. (PostgreSQL's is left out: its backends come and
 * go, and one that ended takes its CPU time out of the sum.)
 */
const cpuPer1000 = (r: Run) => ((r.cores.server ?? NaN) * r.seconds * 1e6) / (resourcesPerPass * repeat);
const rate0 = mean(without.map((r) => r.rate));
const rate1 = mean(withSubs.map((r) => r.rate));
const load = withSubs.flatMap((r) => r.loadLatency).sort((a, b) => a - b);
const idle = withSubs.flatMap((r) => r.idleLatency).sort((a, b) => a - b);
const figures = {
  bench: 'subscriptions',
  runs,
  concurrency,
  resourcesPerPass,
  subscriptions: withSubs[0].subscriptions,
  notifyingCodes: notifying.length,
  resourcesPerSecondWithout: round(rate0),
  resourcesPerSecondWith: round(rate1),
  ratesWithout: without.map((r) => round(r.rate)),
  ratesWith: withSubs.map((r) => round(r.rate)),
  change: round((rate1 / rate0 - 1) * 100, 1),
  serverCpuMsPer1000Without: round(mean(without.map(cpuPer1000))),
  serverCpuMsPer1000With: round(mean(withSubs.map(cpuPer1000))),
  cpuChange: round((mean(withSubs.map(cpuPer1000)) / mean(without.map(cpuPer1000)) - 1) * 100, 1),
  otherCoresBusy: results.map((r) => r.cores.other),
  repeat,
  notificationsPerRun: round(mean(withSubs.map((r) => r.notifications))),
  latencyUnderLoadP50Ms: round(quantile(load, 0.5)),
  latencyUnderLoadP99Ms: round(quantile(load, 0.99)),
  latencyIdleP50Ms: round(quantile(idle, 0.5)),
  latencyIdleP99Ms: round(quantile(idle, 0.99)),
  probes: load.length + idle.length,
  withinTenPercent: rate1 >= rate0 * 0.9,
  latencyUnderOneSecond: quantile(idle, 0.5) < 1000 && quantile(load, 0.5) < 1000,
};
console.log(
  [
    `subscriptions: ${resourcesPerPass} resources a pass (${files.length} Synthea bundles as transactions, ${concurrency} in flight), ${repeat} passes a run, ${runs} run(s), fresh servers`,
    `  without subscriptions: ${figures.resourcesPerSecondWithout} resources/s (${figures.ratesWithout.join(', ')})`,
    `  with ${figures.subscriptions} active:    ${figures.resourcesPerSecondWith} resources/s (${figures.ratesWith.join(', ')}), ${figures.change}% (target within 10%)`,
    `  server CPU per 1,000 resources: ${figures.serverCpuMsPer1000Without} ms without, ${figures.serverCpuMsPer1000With} ms with, ${figures.cpuChange}% (other processes kept ${figures.otherCoresBusy.join(', ')} cores busy)`,
    `  notifications a run: ${figures.notificationsPerRun} (${notifying.length} subscriptions on codes the load holds)`,
    `  latency write answer -> receiver: p50 ${figures.latencyUnderLoadP50Ms} ms, p99 ${figures.latencyUnderLoadP99Ms} ms under the load; p50 ${figures.latencyIdleP50Ms} ms, p99 ${figures.latencyIdleP99Ms} ms idle (target p50 < 1 s; ${figures.probes} probes)`,
  ].join('\n'),
);
console.log(JSON.stringify(figures));
process.exit(figures.withinTenPercent && figures.latencyUnderOneSecond ? 0 : 1);
