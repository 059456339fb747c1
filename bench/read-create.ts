/**
 * Read and create throughput, with autocannon in this process (the server runs in its own; see
 * bench/server.ts).
 *
 *   npx node bench/read-create.ts [--connections 32] [--read-s 15] [--create-s 10] [--patients 1000]
 *                                 [--workers 0] [--settle-s 0] [--url http://127.0.0.1:8080]
 *
 * --settle-s waits that long between creating the Patients and reading them: on a fresh database
 * PostgreSQL has no statistics until autovacuum's first ANALYZE (up to a minute or so later), and
 * until then it may plan reads by id badly; 70 s lets that happen first.
 * (a) creates the Patients, then GETs them by id for --read-s seconds, cycling over the ids;
 * (b) POSTs small Patients and Observations (alternately) for --create-s seconds.
 * Prints requests/s, p50/p99 latency and non-2xx counts, the cores kept busy by the server,
 * PostgreSQL, autocannon (near one core means autocannon is the bottleneck: try --workers 2) and
 * other processes (the figures are only clean on an otherwise idle machine), then
 * one JSON line. Exits 1 when any request failed.
 */
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { cpuMeter, describeCores, peakSampler, round, startServer, type BenchServer } from './server.ts';

const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '32' },
    'read-s': { type: 'string', default: '15' },
    'create-s': { type: 'string', default: '10' },
    patients: { type: 'string', default: '1000' },
    workers: { type: 'string', default: '0' },
    'settle-s': { type: 'string', default: '0' },
    url: { type: 'string' },
  },
});
const clamp = (v: string, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.floor(Number(v)) || lo));
const connections = clamp(args.connections, 1, 512);
const readSeconds = clamp(args['read-s'], 1, 600);
const createSeconds = clamp(args['create-s'], 1, 600);
const patientCount = clamp(args.patients, 1, 100_000);
const workers = clamp(args.workers, 0, 8);
const settleSeconds = Math.min(300, Math.max(0, Number(args['settle-s']) || 0));
const FHIR = { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' };
const TARGET = { readRps: 5000, readP99Ms: 20, createsPerSecond: 1500 };

const patient = (i: number) => ({
  resourceType: 'Patient',
  identifier: [{ system: 'urn:bench', value: `p-${i}` }],
  name: [{ family: `Bench${i % 97}`, given: ['Ada'] }],
  gender: i % 2 ? 'female' : 'male',
  birthDate: `19${50 + (i % 50)}-0${1 + (i % 9)}-1${i % 10}`,
});
const observation = (patientId: string) => ({
  resourceType: 'Observation',
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
  subject: { reference: `Patient/${patientId}` },
  effectiveDateTime: '2024-05-01T10:00:00Z',
  valueQuantity: { value: 72, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
});

/** Creates n Patients, 16 at a time; answers their ids. */
async function createPatients(base: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < n) {
        const i = next++;
        const res = await fetch(`${base}/fhir/r4/Patient`, { method: 'POST', headers: FHIR, body: JSON.stringify(patient(i)), signal: AbortSignal.timeout(30_000) });
        const body = (await res.json()) as { id?: string };
        if (res.status !== 201 || !body.id) throw new Error(`creating Patient ${i}: HTTP ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
        ids.push(body.id);
      }
    }),
  );
  return ids;
}

/** Runs autocannon and measures the cores busy and the server's peak RSS meanwhile. */
async function load(server: BenchServer, requests: autocannon.Request[], duration: number) {
  const cpu = cpuMeter(server);
  const rss = peakSampler(() => server.rssMB(), 100);
  const r = await autocannon({ url: server.base, connections, duration, requests, ...(workers ? { workers } : {}), timeout: 10 });
  const peakRss = rss.stop();
  const coresBusy = cpu.stop();
  const secs = r.duration || duration;
  return {
    requests: r['2xx'],
    requestsPerSecond: round(r['2xx'] / secs),
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    maxMs: r.latency.max,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    failed: r.non2xx + r.errors + r.timeouts,
    serverPeakRssMB: round(peakRss),
    coresBusy,
  };
}

function describe(name: string, f: Awaited<ReturnType<typeof load>>, target: string): string {
  return [
    `${name}: ${f.requestsPerSecond} req/s (${f.requests} in all), latency p50 ${f.p50Ms} ms, p99 ${f.p99Ms} ms, max ${f.maxMs} ms; target ${target}`,
    `  non-2xx ${f.non2xx}, errors ${f.errors}, timeouts ${f.timeouts}; server peak RSS ${f.serverPeakRssMB ?? 'n/a'} MB`,
    `  ${describeCores(f.coresBusy)}`,
  ].join('\n');
}

const server = await startServer(args.url);
let failed = 0;
try {
  const ids = await createPatients(server.base, patientCount);
  if (settleSeconds) await new Promise((r) => setTimeout(r, settleSeconds * 1000));
  // Each connection cycles through these; a rotated copy per connection is not needed for reads.
  const reads = ids.map((id) => ({ method: 'GET' as const, path: `/fhir/r4/Patient/${id}`, headers: { accept: 'application/fhir+json' } }));
  await autocannon({ url: server.base, connections, duration: 2, requests: reads }); // warm-up, not counted
  const read = await load(server, reads, readSeconds);

  const creates = [
    { method: 'POST' as const, path: '/fhir/r4/Patient', headers: FHIR, body: JSON.stringify(patient(0)) },
    { method: 'POST' as const, path: '/fhir/r4/Observation', headers: FHIR, body: JSON.stringify(observation(ids[0])) },
  ];
  const create = await load(server, creates, createSeconds);
  failed = read.failed + create.failed;

  console.log(`read-create: ${connections} connections${workers ? `, ${workers} autocannon workers` : ''}, ${patientCount} Patients, reads ${settleSeconds} s after creating them`);
  console.log(describe(`read (${readSeconds} s)`, read, `>= ${TARGET.readRps} req/s, p99 < ${TARGET.readP99Ms} ms`));
  console.log(describe(`create (${createSeconds} s, Patient/Observation)`, create, `>= ${TARGET.createsPerSecond}/s`));
  if (Math.max(read.coresBusy.bench, create.coresBusy.bench) > 0.9) {
    console.log('  note: autocannon used about a whole core; it may be the bottleneck (try --workers 2)');
  }
  console.log(JSON.stringify({ bench: 'read-create', connections, workers, patients: patientCount, settleSeconds, readSeconds, createSeconds, read, create, target: TARGET, failed, allOk: failed === 0 }));
} catch (err) {
  console.error(`FAILED ${(err as Error).message}`);
  failed = Math.max(failed, 1);
} finally {
  await server.stop();
}
process.exit(failed ? 1 : 0);
