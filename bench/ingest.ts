/**
 * Ingest benchmark: loads every Synthea bundle of ../shared/synthea as a FHIR transaction, a few
 * in flight at once, from this process (the server runs in its own; see bench/server.ts).
 *
 *   npx node bench/ingest.ts [--concurrency 4] [--repeat 1] [--url http://127.0.0.1:8080] [--dir path]
 *                            [--timeout-s 1800]   (no bundle is sent after that; unsent ones count as failed)
 *
 * Prints resources/s, bundles/s, p50/p99 per-bundle latency, the server's peak RSS (sampled every
 * 100 ms; the Node process only, not PostgreSQL) and whether every response was a 200 whose
 * entries were all created; then one JSON line. Exits 1 when any bundle failed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO, cpuMeter, describeCores, peakSampler, quantile, round, startServer } from './server.ts';

const { values: args } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '4' },
    repeat: { type: 'string', default: '1' },
    url: { type: 'string' },
    dir: { type: 'string', default: path.resolve(REPO, '..', 'shared', 'synthea') },
    'timeout-s': { type: 'string', default: '1800' },
  },
});
const clamp = (v: string, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.floor(Number(v)) || lo));
const concurrency = clamp(args.concurrency, 1, 64);
const repeat = clamp(args.repeat, 1, 100);
const deadline = Date.now() + clamp(args['timeout-s'], 1, 7200) * 1000; // no new bundle is sent after it
const REQUEST_TIMEOUT_MS = 300_000;
const RSS_TARGET_MB = 300;

interface Bundle {
  name: string;
  body: Buffer<ArrayBuffer>;
  resources: number;
}
const files = fs
  .readdirSync(args.dir)
  .filter((f) => f.endsWith('.json'))
  .sort();
if (files.length === 0) throw new Error(`No *.json bundles in ${args.dir}`);
const bundles: Bundle[] = files.map((f) => {
  const body = fs.readFileSync(path.join(args.dir, f));
  return { name: f, body, resources: (JSON.parse(body.toString('utf8')).entry ?? []).length };
});

/** POSTs one transaction; answers its latency in ms or throws with why it failed. */
async function post(base: string, b: Bundle): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${base}/fhir/r4`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' },
    body: b.body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  const ms = performance.now() - t0;
  if (res.status !== 200) throw new Error(`${b.name}: HTTP ${res.status} ${text.slice(0, 300)}`);
  const entries = (JSON.parse(text).entry ?? []) as { response?: { status?: string } }[];
  const bad = entries.filter((e) => !/^201/.test(e.response?.status ?? ''));
  if (entries.length !== b.resources || bad.length) {
    throw new Error(`${b.name}: ${entries.length} response entries for ${b.resources}, ${bad.length} not 201 (first: ${bad[0]?.response?.status})`);
  }
  return ms;
}

const server = await startServer(args.url);
let failed = 0;
try {
  // Warm-up, not counted: the smallest bundle once.
  const smallest = bundles.reduce((a, b) => (b.body.length < a.body.length ? b : a));
  await post(server.base, smallest);

  const queue = Array.from({ length: repeat }, () => bundles).flat();
  const latencies: number[] = [];
  const errors: string[] = [];
  let resources = 0;
  let next = 0;
  const cpu = cpuMeter(server);
  const rssBefore = server.rssMB();
  const rss = peakSampler(() => server.rssMB(), 100);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < queue.length && Date.now() < deadline) {
        const b = queue[next++];
        try {
          latencies.push(await post(server.base, b));
          resources += b.resources;
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  const peakRss = rss.stop();
  const cores = cpu.stop();
  failed = errors.length + (queue.length - latencies.length - errors.length); // unsent ones (deadline) count too
  latencies.sort((a, b) => a - b);

  const figures = {
    bench: 'ingest',
    bundles: latencies.length,
    resources,
    concurrency,
    repeat,
    wallSeconds: round(wall, 2),
    resourcesPerSecond: round(resources / wall),
    bundlesPerSecond: round(latencies.length / wall, 2),
    p50Ms: round(quantile(latencies, 0.5)),
    p99Ms: round(quantile(latencies, 0.99)),
    maxMs: round(latencies[latencies.length - 1] ?? NaN),
    serverRssBeforeMB: round(rssBefore),
    serverPeakRssMB: round(peakRss),
    rssTargetMB: RSS_TARGET_MB,
    coresBusy: cores,
    failed,
    allOk: failed === 0,
  };
  for (const e of errors.slice(0, 5)) console.error(`FAILED ${e}`);
  console.log(
    [
      `ingest: ${figures.bundles} bundles (${resources} resources) in ${figures.wallSeconds} s, ${concurrency} in flight, ${repeat} pass(es)`,
      `  ${figures.resourcesPerSecond} resources/s, ${figures.bundlesPerSecond} bundles/s`,
      `  per-bundle latency p50 ${figures.p50Ms} ms, p99 ${figures.p99Ms} ms, max ${figures.maxMs} ms`,
      `  server peak RSS ${figures.serverPeakRssMB ?? 'n/a'} MB (target < ${RSS_TARGET_MB} MB; ${figures.serverRssBeforeMB ?? 'n/a'} MB before the load)${peakRss !== null && peakRss >= RSS_TARGET_MB ? '  OVER TARGET' : ''}`,
      `  ${describeCores(cores)}`,
      `  every response 200 with all entries 201: ${failed === 0 ? 'yes' : `NO, ${failed} bundle(s) failed`}`,
    ].join('\n'),
  );
  console.log(JSON.stringify(figures));
} catch (err) {
  console.error(`FAILED ${(err as Error).message}`);
  failed = Math.max(failed, 1);
} finally {
  await server.stop();
}
process.exit(failed ? 1 : 0);
