/**
 * Read and create throughput, with autocannon in this process (the server runs in its own; see
 * bench/server.ts).
 *
 *   npx node bench/read-create.ts [--connections 32] [--read-s 15] [--create-s 10] [--patients 1000]
 *                                 [--workers 0] [--settle-s 0] [--url http://127.0.0.1:8080] [--auth]
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
 *
 * --auth (only with the server started here) measures with authentication: an app (admin API) and
 * a user with an access token (user-management API, /oauth2/token); the Patients are created and
 * read with `Authorization: Bearer`, so every request checks the token and reads only that user's
 * data. It also measures what the check costs: one client reads, in alternation, a Patient of the
 * built-in app without credentials (FHIR_AUTH=off) and one of the user with the token, 2,000 of each.
 */
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { FHIR, benchObservation, benchPatient, createPatients } from './fixtures.ts';
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
    auth: { type: 'boolean', default: false },
  },
});
const clamp = (v: string, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.floor(Number(v)) || lo));
const connections = clamp(args.connections, 1, 512);
const readSeconds = clamp(args['read-s'], 1, 600);
const createSeconds = clamp(args['create-s'], 1, 600);
const patientCount = clamp(args.patients, 1, 100_000);
const workers = clamp(args.workers, 0, 8);
const settleSeconds = Math.min(300, Math.max(0, Number(args['settle-s']) || 0));
const TARGET = { readRps: 5000, readP99Ms: 20, createsPerSecond: 1500 };

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

/** An app, a user and the user's access token, through the admin, user-management and token APIs. */
async function userToken(base: string, adminKey: string): Promise<string> {
  const made = await fetch(`${base}/admin/apps`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench' }),
  });
  const { client_id, client_secret } = (await made.json()) as { client_id: string; client_secret: string };
  const creds = `client_id=${client_id}&client_secret=${client_secret}`;
  const { code } = (await (await fetch(`${base}/user-management/v1/user?app_user_id=bench&${creds}`, { method: 'POST' })).json()) as { code: string };
  const tok = (await (await fetch(`${base}/oauth2/token?${creds}&code=${code}&grant_type=authorization_code`, { method: 'POST' })).json()) as {
    access_token?: string;
  };
  if (!tok.access_token) throw new Error(`no access token: ${JSON.stringify(tok)}`);
  return tok.access_token;
}

/** p50 of one client's reads without credentials and with the token, alternating (ms, 3 decimals). */
async function tokenCheckCost(base: string, anonymous: string[], withToken: string[], bearer: Record<string, string>) {
  const plain: number[] = [];
  const authed: number[] = [];
  const time = async (path: string, headers: Record<string, string>, into: number[]) => {
    const t0 = performance.now();
    const res = await fetch(`${base}${path}`, { headers });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`GET ${path}: HTTP ${res.status}`);
    into.push(performance.now() - t0);
  };
  for (let i = 0; i < 2200; i++) {
    await time(`/fhir/r4/Patient/${anonymous[i % anonymous.length]}`, { accept: 'application/fhir+json' }, plain);
    await time(`/fhir/r4/Patient/${withToken[i % withToken.length]}`, bearer, authed);
  }
  // The first 200 of each are a warm-up.
  const p50 = (xs: number[]) => xs.slice(200).sort((a, b) => a - b)[(xs.length - 200) >> 1];
  const [a, b] = [p50(plain), p50(authed)];
  return { withoutCredentialsP50Ms: round(a, 3), withTokenP50Ms: round(b, 3), addedP50Ms: round(b - a, 3) };
}

const adminKey = args.auth ? crypto.randomUUID() + crypto.randomUUID() : undefined;
if (adminKey) {
  if (args.url) throw new Error('--auth needs the server started by this script (no --url).');
  process.env.ADMIN_KEY = adminKey;
}
const server = await startServer(args.url);
let failed = 0;
try {
  const bearer = adminKey ? { authorization: `Bearer ${await userToken(server.base, adminKey)}`, accept: 'application/fhir+json' } : undefined;
  const ids = await createPatients(server.base, patientCount, bearer ? { ...FHIR, ...bearer } : FHIR);
  const tokenCheck = bearer ? await tokenCheckCost(server.base, await createPatients(server.base, 200), ids, bearer) : null;
  if (settleSeconds) await new Promise((r) => setTimeout(r, settleSeconds * 1000));
  // Each connection cycles through these; a rotated copy per connection is not needed for reads.
  const reads = ids.map((id) => ({ method: 'GET' as const, path: `/fhir/r4/Patient/${id}`, headers: bearer ?? { accept: 'application/fhir+json' } }));
  await autocannon({ url: server.base, connections, duration: 2, requests: reads }); // warm-up, not counted
  const read = await load(server, reads, readSeconds);

  const creates = [
    { method: 'POST' as const, path: '/fhir/r4/Patient', headers: { ...FHIR, ...bearer }, body: JSON.stringify(benchPatient(0)) },
    { method: 'POST' as const, path: '/fhir/r4/Observation', headers: { ...FHIR, ...bearer }, body: JSON.stringify(benchObservation(ids[0])) },
  ];
  const create = await load(server, creates, createSeconds);
  failed = read.failed + create.failed;

  console.log(
    `read-create: ${connections} connections${workers ? `, ${workers} autocannon workers` : ''}, ${patientCount} Patients, reads ${settleSeconds} s after creating them${bearer ? ", every request with a user's access token" : ''}`,
  );
  if (tokenCheck) {
    console.log(
      `token check (one client, 2,000 reads each): p50 ${tokenCheck.withoutCredentialsP50Ms} ms without credentials, ${tokenCheck.withTokenP50Ms} ms with the token: +${tokenCheck.addedP50Ms} ms (target < 0.5 ms)`,
    );
  }
  console.log(describe(`read (${readSeconds} s)`, read, `>= ${TARGET.readRps} req/s, p99 < ${TARGET.readP99Ms} ms`));
  console.log(describe(`create (${createSeconds} s, Patient/Observation)`, create, `>= ${TARGET.createsPerSecond}/s`));
  if (Math.max(read.coresBusy.bench, create.coresBusy.bench) > 0.9) {
    console.log('  note: autocannon used about a whole core; it may be the bottleneck (try --workers 2)');
  }
  console.log(
    JSON.stringify({
      bench: 'read-create',
      auth: !!bearer,
      connections,
      workers,
      patients: patientCount,
      settleSeconds,
      readSeconds,
      createSeconds,
      tokenCheck,
      read,
      create,
      target: TARGET,
      failed,
      allOk: failed === 0,
    }),
  );
} catch (err) {
  console.error(`FAILED ${(err as Error).message}`);
  failed = Math.max(failed, 1);
} finally {
  await server.stop();
}
process.exit(failed ? 1 : 0);
