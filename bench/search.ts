/**
 * Search benchmark on about 1,000 patients of ~1,000 resources each (about 1,000,000 resources in
 * the shape of ../shared/synthea; see bench/search-data.ts), one client and then 16.
 *
 *   npx node bench/search.ts [--patients 1000] [--data-dir DIR] [--url http://127.0.0.1:8080] [--auth]
 *                            [--requests 300] [--warmup 20] [--warm-rounds 2] [--connections 16] [--duration-s 15]
 *                            [--explain] [--cold] [--load-only] [--load-concurrency 4] [--seed S]
 *                            [--include-query 'Encounter?patient={patient}&...'] [--pg-url postgres://...]
 *
 * --data-dir keeps the embedded PostgreSQL's data folder between runs: the first run loads the
 * patients (about 2,000 resources/s: 8-10 minutes for 1,000 patients; progress on stderr) and a
 * rerun loads only what is missing (a larger --patients extends the set). Without it the data goes
 * to a temporary folder, deleted at the end. The server is started by this script (as `npm start`
 * does, on free loopback ports) unless --url names a running one; with --url, --data-dir (the
 * server's TRIBUTARY_DATA_DIR) or --pg-url gives the database for VACUUM ANALYZE and the scan counts.
 * After loading, VACUUM ANALYZE runs once. Before measuring, pg_prewarm reads the hfj_* tables and
 * indexes into the OS cache (unless the database is larger than the machine's memory) and the
 * queries run about twice per patient (--warm-rounds; not measured), so that shared_buffers hold
 * their working set as in a server in steady state (--cold: neither).
 *
 * --auth measures the records as apps hold them: FHIR_AUTH=required, an app (made once through the
 * admin API, its credentials kept in the data folder) and a user per patient (user-management API,
 * /oauth2/token), each patient's records written with its user's access token, so that they are
 * that user's; the patient searches go with that token (scoped to the user's record), Patient?name=
 * with the app's credentials (over all its users). It needs a data folder of its own.
 *
 * The queries: `Observation?patient=X&code=http://loinc.org|Y` with the reference written each way
 * apps write it (patient=X, patient=Patient/X, subject=Patient/X, subject:Patient=X, an absolute URL
 * on this server, the compartment Patient/X/Observation), `Patient?name=smith`, the date-sorted
 * page and the include page. For each, one client sends --warmup requests and then --requests
 * requests in sequence, each for a random loaded patient, and reports p50/p95/p99 against the
 * targets; every answer must be a 200 searchset Bundle whose entries are right (the patient's, the
 * code asked for, sorted...), else it counts as failed. The forms' p50s are compared (the slowest
 * may be at most 1.2 times the fastest). Then --connections clients mix the four kinds (the patient
 * search in its forms in turn) for --duration-s seconds (autocannon): searches/s and latency. The
 * seq_scan counts of the hfj_* tables (pg_stat_user_tables) are read around each query's run (10 s
 * apart, the time PostgreSQL may take to publish a backend's counts): a sequential scan of a table
 * of 10,000 rows or more is reported as a RED FLAG. Each phase also prints the cores kept busy (a
 * WARNING when other processes disturbed it) and the CPU milliseconds per request of the server
 * and of PostgreSQL, which hold on a busy machine too and bound the searches/s that 2 idle cores
 * could give.
 *
 * --explain (only with the server started here) restarts the server with PostgreSQL's auto_explain
 * loaded in every session (ALTER DATABASE ... SET session_preload_libraries, log_analyze,
 * log_buffers, LOG_LEVEL=debug to see PostgreSQL's log), and for each query sends it 30 times to
 * warm up, then once more, and prints the plan of every SQL statement of that last request as
 * PostgreSQL logged it (EXPLAIN ANALYZE, BUFFERS); the settings are reset afterwards (and at the
 * start of any later run, if a killed run left them).
 *
 * Prints a summary, then one JSON line. Exits 1 when any request failed or answered wrongly.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import {
  REPO,
  describeCores,
  machineBusySeconds,
  quantile,
  round,
  spawnServer,
  waitReady,
  type BenchServer,
  type CoresBusy,
  type SpawnedServer,
} from './server.ts';
import { DEFAULT_SEED, generator, loadPatients, loadTemplates, pgConfigFor, withPg, writeState, type PatientFacts } from './search-data.ts';

const { values: args } = parseArgs({
  options: {
    patients: { type: 'string', default: '1000' },
    'data-dir': { type: 'string' },
    url: { type: 'string' },
    'pg-url': { type: 'string' },
    seed: { type: 'string', default: DEFAULT_SEED },
    requests: { type: 'string', default: '300' },
    warmup: { type: 'string', default: '20' },
    'warm-rounds': { type: 'string', default: '2' },
    connections: { type: 'string', default: '16' },
    'duration-s': { type: 'string', default: '15' },
    'load-concurrency': { type: 'string', default: '4' },
    'include-query': {
      type: 'string',
      default: 'Encounter?patient={patient}&_count=20&_include=Encounter:practitioner&_revinclude=Observation:encounter',
    },
    explain: { type: 'boolean', default: false },
    auth: { type: 'boolean', default: false },
    cold: { type: 'boolean', default: false },
    'load-only': { type: 'boolean', default: false },
    templates: { type: 'string', default: path.resolve(REPO, '..', 'shared', 'synthea') },
  },
});
const clamp = (v: string, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.floor(Number(v)) || lo));
const patientCount = clamp(args.patients, 1, 100_000);
const requestsPerQuery = clamp(args.requests, 1, 100_000);
const warmup = clamp(args.warmup, 0, 10_000);
const warmRounds = clamp(args['warm-rounds'], 0, 100);
const connections = clamp(args.connections, 1, 512);
const duration = clamp(args['duration-s'], 1, 600);
const loadConcurrency = clamp(args['load-concurrency'], 1, 16);
const seed = args.seed;
const FHIR = '/fhir/r4';
const ACCEPT = { accept: 'application/fhir+json' };
const TARGET = { q1P50Ms: 3, q2P50Ms: 3, q3P50Ms: 6, q4P50Ms: 12, searchesPerSecond: 1000, formSpread: 1.2 };
/** LOINC codes every Synthea template patient has (vital signs, pain score, smoking status). */
const CODES = ['8302-2', '29463-7', '72514-3', '55284-4', '39156-5', '72166-2'];
const LARGE_TABLE_ROWS = 10_000;

// ---------------------------------------------------------------------------------------------
// The server: started here with a data folder that may be kept, or attached to with --url.

type OwnServer = SpawnedServer;

/** Starts `node src/server.ts` on `dataDir` (kept unless `temporary`); keepLines keeps its stdout (LOG_LEVEL debug shows PostgreSQL's own log). */
function startOwnServer(dataDir: string, temporary: boolean, logLevel = 'warn', keepLines = false): Promise<OwnServer> {
  return spawnServer(dataDir, { remove: temporary, logLevel, keepLines, readyTimeoutMs: 180_000, stopTimeoutMs: 120_000 });
}

// ---------------------------------------------------------------------------------------------
// The queries

type QueryKey = 'q1' | 'q1b' | 'q1c' | 'q1d' | 'q1e' | 'q1f' | 'q2' | 'q3' | 'q4';
interface Query {
  key: QueryKey;
  label: string;
  /** A form of q1 (the same search, its reference written another way). */
  form?: boolean;
  targetP50Ms: number;
  /** A request path (with its query string) for a random patient (and code). */
  pick(r: () => number): string;
  /** Why the answer is wrong, or null. */
  check(bundle: SearchBundle, path: string): string | null;
}
interface SearchBundle {
  resourceType?: string;
  type?: string;
  total?: number;
  link?: { relation: string; url: string }[];
  entry?: { fullUrl?: string; resource?: Record<string, unknown> & { resourceType: string; id: string }; search?: { mode?: string } }[];
}
/** What the bench knows of the loaded patients (from the generator), to check answers; null facts when unknown (--url without the state file). */
interface Known {
  ids: string[];
  facts: Map<string, PatientFacts> | null;
  /** Patients with a name starting with "smith". */
  smiths: number | null;
}

const refTo = (v: unknown, patientId: string) => {
  const ref = (v as { reference?: string } | undefined)?.reference ?? '';
  return ref === `Patient/${patientId}` || ref.endsWith(`/Patient/${patientId}`);
};
const matches = (b: SearchBundle) => (b.entry ?? []).filter((e) => (e.search?.mode ?? 'match') === 'match');
const effective = (o: Record<string, unknown>) =>
  (o.effectiveDateTime ?? (o.effectivePeriod as { start?: string } | undefined)?.start ?? o.effectiveInstant ?? '') as string;
/** The patient a query path is about, however its reference is written. */
const patientOf = (p: string) => {
  const d = decodeURIComponent(p);
  return (/\/Patient\/([^/?&]+)\/Observation/.exec(d) ?? /[?&](?:patient|subject)(?::Patient)?=(?:[^&]*Patient\/)?([^&]+)/.exec(d))![1];
};
const any = <T>(xs: T[], r: () => number): T => xs[Math.floor(r() * xs.length)];

/**
 * The ways apps write the patient of `Observation?patient=X&code=Y` (fhirclient and
 * fhir-kit-client write Patient/X): each is measured, and none may be more than 20% slower than
 * the fastest. `serverBase` is the server's own base URL (from its links), for the absolute form.
 */
let serverBase = '';
const REFERENCE_FORMS: [QueryKey, string, (id: string) => string][] = [
  ['q1', 'Observation?patient=X', (id) => `Observation?patient=${id}`],
  ['q1b', 'Observation?patient=Patient/X', (id) => `Observation?patient=Patient/${id}`],
  ['q1c', 'Observation?subject=Patient/X', (id) => `Observation?subject=Patient/${id}`],
  ['q1d', 'Observation?subject:Patient=X', (id) => `Observation?subject:Patient=${id}`],
  ['q1e', 'Observation?patient=<this server>/Patient/X', (id) => `Observation?patient=${encodeURIComponent(`${serverBase}/Patient/${id}`)}`],
  ['q1f', 'Patient/X/Observation', (id) => `Patient/${id}/Observation`],
];
/** `path` with a code condition after its query (or as its query). */
const withCode = (path: string, code: string) => `${path}${path.includes('?') ? '&' : '?'}code=${code}`;

function makeQueries(k: Known): Query[] {
  const includeType = args['include-query'].split('?')[0];
  // Observation?date=ge2015 goes to patients who have Observations since 2015 (95% of them).
  const recent = k.facts ? k.ids.filter((id) => k.facts!.get(id)!.latestObservation >= '2015') : k.ids;
  return [
    ...REFERENCE_FORMS.map(([key, label, write]): Query => ({
      key,
      label: withCode(label, 'http://loinc.org|Y'),
      form: true,
      targetP50Ms: TARGET.q1P50Ms,
      pick(r) {
        const id = any(k.ids, r);
        const codes = k.facts ? CODES.filter((c) => k.facts!.get(id)!.loincCodes.has(c)) : CODES;
        return `${FHIR}/${withCode(write(id), encodeURIComponent(`http://loinc.org|${any(codes, r)}`))}`;
      },
      check(b, p) {
        const id = patientOf(p);
        const code = decodeURIComponent(/code=([^&]+)/.exec(p)![1]).split('|')[1];
        const m = matches(b);
        if (m.length === 0 && k.facts) return `no Observation (the patient has some with code ${code})`;
        for (const e of m) {
          const o = e.resource!;
          if (o.resourceType !== 'Observation' || !refTo(o.subject, id)) return `${o.resourceType}/${o.id} is not an Observation of Patient/${id}`;
          const codings = (o.code as { coding?: { system?: string; code?: string }[] }).coding ?? [];
          if (!codings.some((c) => c.system === 'http://loinc.org' && c.code === code)) return `Observation/${o.id} does not have code ${code}`;
        }
        return null;
      },
    })),
    {
      key: 'q2',
      label: 'Patient?name=smith',
      targetP50Ms: TARGET.q2P50Ms,
      pick: () => `${FHIR}/Patient?name=smith`,
      check(b) {
        const m = matches(b);
        if (k.smiths && m.length === 0) return `no Patient (${k.smiths} of the loaded patients have a name starting with "smith")`;
        if (k.smiths && b.total !== undefined && b.total < k.smiths)
          return `total ${b.total}, but ${k.smiths} of the loaded patients have a name starting with "smith"`;
        for (const e of m) {
          const p = e.resource!;
          const names = (p.name ?? []) as { family?: string; given?: string[]; text?: string; prefix?: string[]; suffix?: string[] }[];
          const words = names
            .flatMap((n) => [n.family, n.text, ...(n.given ?? []), ...(n.prefix ?? []), ...(n.suffix ?? [])])
            .filter(Boolean) as string[];
          if (p.resourceType !== 'Patient' || !words.some((w) => w.toLowerCase().startsWith('smith')))
            return `${p.resourceType}/${p.id} has no name starting with "smith"`;
        }
        return null;
      },
    },
    {
      key: 'q3',
      label: 'Observation?patient=X&date=ge2015&_sort=-date&_count=50',
      targetP50Ms: TARGET.q3P50Ms,
      pick: (r) => `${FHIR}/Observation?patient=${any(recent, r)}&date=ge2015&_sort=-date&_count=50`,
      check(b, p) {
        const id = patientOf(p);
        const m = matches(b);
        if (m.length === 0 && k.facts) return 'no Observation (the patient has some since 2015)';
        if (m.length > 50) return `${m.length} matches on a page of _count=50`;
        let prev = '\uffff';
        for (const e of m) {
          const o = e.resource!;
          if (o.resourceType !== 'Observation' || !refTo(o.subject, id)) return `${o.resourceType}/${o.id} is not an Observation of Patient/${id}`;
          const d = effective(o);
          if (d && d < '2015') return `Observation/${o.id} is dated ${d}, before 2015`;
          // Compared as instants (UTC).
          const t = d ? new Date(d).toISOString() : '';
          if (t > prev) return `not sorted by -date: ${t} after ${prev}`;
          prev = t;
        }
        return null;
      },
    },
    {
      key: 'q4',
      label: args['include-query'].replace('{patient}', 'X'),
      targetP50Ms: TARGET.q4P50Ms,
      pick: (r) => `${FHIR}/${args['include-query'].replace('{patient}', any(k.ids, r))}`,
      check(b, p) {
        const id = patientOf(p);
        const m = matches(b);
        if (m.length === 0) return `no ${includeType}`;
        for (const e of m) {
          const x = e.resource!;
          if (x.resourceType !== includeType) return `a match is a ${x.resourceType}, not a ${includeType}`;
          if (!refTo(x.subject ?? x.patient, id)) return `${includeType}/${x.id} is not Patient/${id}'s`;
        }
        const included = (b.entry ?? []).filter((e) => e.search?.mode === 'include');
        if (included.length === 0) return 'no entry with search.mode "include" (_include / _revinclude gave nothing)';
        return null;
      },
    },
  ];
}

/** A 32-bit PRNG (mulberry32). */
function prng(seedNumber: number): () => number {
  let a = seedNumber | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** GETs a path; answers the latency, the parsed body and what is wrong with it (status, not a Bundle). */
async function get(base: string, p: string): Promise<{ ms: number; status: number; bytes: number; bundle?: SearchBundle; error?: string }> {
  const headers = { ...ACCEPT, ...credentialsFor(p) };
  const t0 = performance.now();
  const res = await fetch(`${base}${p}`, { headers, signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  const ms = performance.now() - t0;
  if (res.status !== 200) return { ms, status: res.status, bytes: text.length, error: `HTTP ${res.status} ${text.slice(0, 400)}` };
  let bundle: SearchBundle;
  try {
    bundle = JSON.parse(text) as SearchBundle;
  } catch {
    return { ms, status: res.status, bytes: text.length, error: `not JSON: ${text.slice(0, 200)}` };
  }
  if (bundle.resourceType !== 'Bundle' || bundle.type !== 'searchset')
    return { ms, status: res.status, bytes: text.length, error: `not a searchset Bundle: ${text.slice(0, 200)}` };
  return { ms, status: res.status, bytes: text.length, bundle };
}

/** Patient ids by `GET Patient?_count=1000&_elements=id`, following next links. */
async function listPatients(base: string): Promise<string[]> {
  const ids: string[] = [];
  let url: string | undefined = `${base}${FHIR}/Patient?_count=1000&_elements=id`;
  for (let pages = 0; url && pages < 1000; pages++) {
    const res = await fetch(url, { headers: { ...ACCEPT, ...(auth?.reader ?? {}) }, signal: AbortSignal.timeout(120_000) });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status} ${text.slice(0, 400)}`);
    const b = JSON.parse(text) as SearchBundle;
    for (const e of b.entry ?? []) if (e.resource?.resourceType === 'Patient') ids.push(e.resource.id);
    const next = b.link?.find((l) => l.relation === 'next')?.url;
    // The server's links carry its BASE_URL; the bench talks to the address it was given.
    url = next ? `${base}${new URL(next).pathname.replace(/^.*?(\/fhir\/r4\/|\/r4\/)/, FHIR + '/')}${new URL(next).search}` : undefined;
  }
  return ids;
}

// ---------------------------------------------------------------------------------------------
// --auth: the records as apps hold them. An app (made once through the admin API; its credentials
// kept in the data folder) and a user per patient, whose records are written with the user's own
// access token and so are the user's; the patient searches are sent with that token (scoped to the
// user's record), Patient?name= with the app's credentials (over all its users).

interface BenchAuth {
  /** The server's address (a restarted server has another port). */
  base: string;
  /** The app's credentials, acting for all its users. */
  reader: Record<string, string>;
  /** Patient index -> its user's access token, fetched once. */
  tokens: Map<number, string>;
  token(i: number): Promise<string>;
}
let auth: BenchAuth | undefined;
/** Patient id -> its index (set once the patients are known). */
let indexOfPatient = new Map<string, number>();
const APP_FILE = 'search-bench-app.json';

async function benchAuth(base: string, dir: string, adminKey: string, seedValue: string, loadedBefore: number): Promise<BenchAuth> {
  const file = path.join(dir, APP_FILE);
  let creds: { client_id: string; client_secret: string };
  if (fs.existsSync(file)) creds = JSON.parse(fs.readFileSync(file, 'utf8'));
  else {
    if (loadedBefore) throw new Error(`${dir} holds patients loaded without --auth (no ${APP_FILE}): give --auth another --data-dir`);
    const made = await fetch(`${base}/admin/apps`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'search bench' }),
    });
    if (made.status >= 300) throw new Error(`POST /admin/apps: HTTP ${made.status} ${(await made.text()).slice(0, 300)}`);
    creds = (await made.json()) as typeof creds;
    fs.writeFileSync(file, JSON.stringify({ client_id: creds.client_id, client_secret: creds.client_secret }), { mode: 0o600 });
  }
  const q = `client_id=${encodeURIComponent(creds.client_id)}&client_secret=${encodeURIComponent(creds.client_secret)}`;
  const tokens = new Map<number, string>();
  const post = async (p: string) =>
    (await (await fetch(`${self.base}${p}`, { method: 'POST', signal: AbortSignal.timeout(30_000) })).json()) as Record<string, unknown>;
  const self: BenchAuth = {
    base,
    reader: { client_id: creds.client_id, client_secret: creds.client_secret, 'x-oneup-user-id': 'client' },
    tokens,
    async token(i) {
      const known = tokens.get(i);
      if (known) return known;
      const who = `${q}&app_user_id=${encodeURIComponent(`bench-${seedValue}-${i}`)}`;
      let made = await post(`/user-management/v1/user?${who}`);
      if (typeof made.code !== 'string') made = await post(`/user-management/v1/user/auth-code?${who}`);
      if (typeof made.code !== 'string') throw new Error(`no code for user ${i}: ${JSON.stringify(made).slice(0, 300)}`);
      const tok = await post(`/oauth2/token?${q}&code=${encodeURIComponent(made.code)}&grant_type=authorization_code`);
      if (typeof tok.access_token !== 'string') throw new Error(`no access token for user ${i}: ${JSON.stringify(tok).slice(0, 300)}`);
      tokens.set(i, tok.access_token);
      return tok.access_token;
    },
  };
  return self;
}

/** The credentials a query path is sent with: none without --auth; the app's for Patient?name=; else its patient's user's token. */
function credentialsFor(p: string): Record<string, string> {
  if (!auth) return {};
  if (p.startsWith(`${FHIR}/Patient?`)) return auth.reader;
  const i = indexOfPatient.get(patientOf(p));
  const token = i === undefined ? undefined : auth.tokens.get(i);
  return token ? { authorization: `Bearer ${token}` } : auth.reader;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: scan counts, VACUUM ANALYZE, auto_explain

type ScanCounts = Map<string, { seqScan: number; seqTupRead: number; idxScan: number; rows: number }>;

async function scanCounts(c: pg.Client): Promise<ScanCounts> {
  // A backend flushes its table statistics when it goes idle, at most once a second; what it could
  // not flush then waits for its idle timeout (PGSTAT_IDLE_INTERVAL, 10 s). Waiting that long keeps
  // one query's scans from being counted against the next.
  await new Promise((r) => setTimeout(r, 10_500));
  const { rows } = await c.query(
    `SELECT relname, seq_scan::float8 AS s, seq_tup_read::float8 AS t, coalesce(idx_scan, 0)::float8 AS i, n_live_tup::float8 AS n
       FROM pg_stat_user_tables WHERE relname LIKE 'hfj\\_%' ORDER BY relname`,
  );
  return new Map(rows.map((r) => [r.relname as string, { seqScan: r.s, seqTupRead: r.t, idxScan: r.i, rows: r.n }]));
}

interface ScanDelta {
  table: string;
  seqScans: number;
  rowsRead: number;
  tableRows: number;
  red: boolean;
}
function scanDelta(before: ScanCounts, after: ScanCounts): ScanDelta[] {
  const out: ScanDelta[] = [];
  for (const [table, a] of after) {
    const b = before.get(table);
    const d = a.seqScan - (b?.seqScan ?? 0);
    if (d > 0) out.push({ table, seqScans: d, rowsRead: a.seqTupRead - (b?.seqTupRead ?? 0), tableRows: a.rows, red: a.rows >= LARGE_TABLE_ROWS });
  }
  return out;
}
function describeScans(d: ScanDelta[]): string {
  const red = d.filter((x) => x.red);
  const small = d.filter((x) => !x.red);
  const parts = red.map((x) => `RED FLAG: ${x.table} seq_scan +${x.seqScans} (${x.rowsRead} rows read; the table has ~${x.tableRows} rows)`);
  if (small.length)
    parts.push(`sequential scans of small tables only (< ${LARGE_TABLE_ROWS} rows): ${small.map((x) => `${x.table} +${x.seqScans}`).join(', ')}`);
  return red.length ? parts.join('; ') : `no sequential scan of a large hfj_* table${parts.length ? `; ${parts.join('; ')}` : ''}`;
}

const AUTO_EXPLAIN = [
  `session_preload_libraries = 'auto_explain'`,
  `auto_explain.log_min_duration = 0`,
  `auto_explain.log_analyze = on`,
  `auto_explain.log_buffers = on`,
  `auto_explain.log_timing = on`,
  `auto_explain.log_nested_statements = on`,
];
const AUTO_EXPLAIN_NAMES = AUTO_EXPLAIN.map((s) => s.split(' = ')[0]);

/** CPU seconds of every process by pid, with its parent: [ppid, seconds]. */
function processTimes(): Map<number, [number, number]> {
  const out = new Map<number, [number, number]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const st = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      out.set(Number(name), [Number(f[1]), (Number(f[11]) + Number(f[12])) / 100]);
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * Like bench/server.ts's cpuMeter, but per process: a PostgreSQL backend that exits during the
 * measurement (the pool closes idle connections, autovacuum workers come and go) no longer makes
 * the sum go down; the CPU it used before exiting is lost (under-counted), which is small here.
 */
function cpuMeter(server: BenchServer): { stop(): CoresBusy } {
  const pid = server.pid;
  const t0 = performance.now();
  const [p0, b0, m0] = [processTimes(), process.cpuUsage(), machineBusySeconds()];
  const isDescendant = (procs: Map<number, [number, number]>, p: number) => {
    for (let up = procs.get(p)?.[0] ?? 0, depth = 0; up > 1 && depth < 10; up = procs.get(up)?.[0] ?? 0, depth++) if (up === pid) return true;
    return false;
  };
  return {
    stop() {
      const secs = (performance.now() - t0) / 1000;
      const [p1, b, m1] = [processTimes(), process.cpuUsage(b0), machineBusySeconds()];
      const bench = (b.user + b.system) / 1e6;
      let srv: number | null = null;
      let pg: number | null = null;
      if (pid !== undefined && p1.has(pid)) {
        srv = p1.get(pid)![1] - (p0.get(pid)?.[1] ?? 0);
        pg = 0;
        for (const [p, [, t]] of p1) if (p !== pid && isDescendant(p1, p)) pg += t - (p0.get(p)?.[1] ?? 0);
      }
      const per = (x: number | null) => round(x === null ? null : x / secs, 2);
      return {
        server: per(srv),
        postgres: per(pg),
        bench: per(bench)!,
        other: per(srv === null || pg === null ? null : Math.max(0, m1 - m0 - srv - pg - bench)),
      };
    },
  };
}

/** CPU milliseconds per request of the server, PostgreSQL and the bench, from cores busy over `seconds`; null when unknown. */
function cpuMsPer(c: CoresBusy, seconds: number, requests: number): { server: number; postgres: number; bench: number } | null {
  if (c.server === null || c.postgres === null || requests === 0) return null;
  const ms = (cores: number) => round((cores * seconds * 1000) / requests, 2)!;
  return { server: ms(c.server), postgres: ms(c.postgres), bench: ms(c.bench) };
}

/** Removes the auto_explain settings of --explain from the database (a run killed mid-way may leave them); answers whether there were any. */
async function resetAutoExplain(conf: pg.ClientConfig | string): Promise<boolean> {
  return withPg(conf, async (c) => {
    const { rows } = await c.query(
      `SELECT setconfig FROM pg_db_role_setting WHERE setrole = 0 AND setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    const set = ((rows[0]?.setconfig ?? []) as string[]).filter((x) => AUTO_EXPLAIN_NAMES.includes(x.split('=')[0]));
    for (const name of AUTO_EXPLAIN_NAMES) await c.query(`ALTER DATABASE postgres RESET ${name}`);
    return set.length > 0;
  });
}

/** PostgreSQL's log messages from the server's stdout (LOG_LEVEL=debug: `{"msg":"postgres","pg":"..."}`), one per message. */
function pgMessages(lines: string[]): string[] {
  const text: string[] = [];
  for (const l of lines) {
    if (!l.includes('"postgres"')) continue;
    try {
      const o = JSON.parse(l) as { msg?: string; pg?: string };
      if (o.msg === 'postgres' && o.pg) text.push(o.pg.replace(/^\[STDERR\] /, ''));
    } catch {
      // not a JSON line
    }
  }
  return text
    .join('\n')
    .split(/\n(?=\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})/)
    .filter((m) => m.includes('duration:') && m.includes('plan:'));
}

// ---------------------------------------------------------------------------------------------

const dataDir = args['data-dir']
  ? path.resolve(args['data-dir'])
  : args.url
    ? undefined
    : fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-search-'));
const adminKey = args.auth ? `${crypto.randomUUID()}${crypto.randomUUID()}` : undefined;
if (adminKey) {
  if (args.url) throw new Error('--auth needs the server started by this script (no --url).');
  // Every request needs credentials, as in production; the admin key makes the app the first time.
  process.env.FHIR_AUTH = 'required';
  process.env.ADMIN_KEY = adminKey;
  // A user and a code per patient, and a code again per patient on each run: past the default 300
  // user-management calls an app may make in an hour.
  process.env.USER_API_RATE_LIMIT ??= '100000';
}
const temporary = !args['data-dir'] && !args.url;
let server: OwnServer | BenchServer | undefined;
let failed = 0;
const stopServer = async () => {
  const s = server;
  server = undefined;
  await s?.stop();
};
const onSignal = () => void stopServer().finally(() => process.exit(130));
process.once('SIGINT', onSignal).once('SIGTERM', onSignal);

try {
  if (args.url) {
    const base = args.url.replace(/\/+$/, '');
    await waitReady(base, undefined, 180_000);
    server = { base, pid: undefined, rssMB: () => null, cpu: () => null, stop: async () => {} };
  } else {
    server = await startOwnServer(dataDir!, temporary);
  }
  let base = server.base;
  /** The database, read afresh (the embedded PostgreSQL's port changes when the server restarts). */
  const pgConf = (): pg.ClientConfig | string | undefined =>
    args['pg-url'] ?? (dataDir && fs.existsSync(path.join(dataDir, 'pg-password')) ? pgConfigFor(dataDir) : undefined);

  // 1. Data
  if (adminKey) {
    const before = fs.existsSync(path.join(dataDir!, 'search-bench-state.json'))
      ? Object.keys(JSON.parse(fs.readFileSync(path.join(dataDir!, 'search-bench-state.json'), 'utf8')).patients ?? {}).length
      : 0;
    auth = await benchAuth(base, dataDir!, adminKey, seed, before);
  }
  const a = auth;
  const load = await loadPatients({
    base,
    patients: patientCount,
    seed,
    dataDir,
    concurrency: loadConcurrency,
    templatesDir: args.templates,
    auth: a && { reader: a.reader, writer: async (i) => ({ authorization: `Bearer ${await a.token(i)}` }) },
  });
  const state = load.state;
  if (load.loadedNow.patients) {
    console.error(
      `loaded ${load.loadedNow.patients} patients (${load.loadedNow.resources} resources) in ${round(load.loadedNow.seconds)} s: ${round(load.loadedNow.resources / load.loadedNow.seconds)} resources/s`,
    );
  }
  let vacuumSeconds: number | null = null;
  let conf = pgConf();
  if (conf && (state.analyzedAt !== Object.keys(state.patients).length || !dataDir)) {
    console.error('VACUUM ANALYZE ...');
    const t0 = performance.now();
    await withPg(conf, (c) => c.query('VACUUM ANALYZE'));
    vacuumSeconds = round((performance.now() - t0) / 1000);
    state.analyzedAt = Object.keys(state.patients).length;
    writeState(dataDir, state);
    console.error(`VACUUM ANALYZE took ${vacuumSeconds} s`);
  } else if (!conf) {
    console.error('no database access (--url without --data-dir or --pg-url): no VACUUM ANALYZE, no scan counts');
  }
  if (conf && (await resetAutoExplain(conf))) {
    console.error('auto_explain settings left by an interrupted --explain run were removed; restarting the server');
    if (server && 'dataDir' in server) {
      await stopServer();
      server = await startOwnServer(dataDir!, temporary);
      base = server.base;
      if (auth) auth.base = base;
      conf = pgConf();
    }
  }
  // A server in steady state holds its working set in memory; right after a (re)start PostgreSQL's
  // buffers are empty and each query would first copy pages in. The database (6 GB for 1,000
  // patients) is larger than shared_buffers (a quarter of the memory, 4 GB at most, by default), so
  // reading all of it into shared_buffers would leave there whichever relations came last, not the
  // ones the queries read. So: pg_prewarm (shipped with PostgreSQL) reads the hfj_* tables and
  // indexes into the operating system's cache here, and the four queries run about twice per
  // patient below (not measured), which brings their working set into shared_buffers as serving
  // them for a while would. --cold skips both.
  const dbFacts = conf
    ? await withPg(conf, async (c) => {
        const { rows } = await c.query(
          `SELECT (SELECT count(*) FROM hfj_resource)::int AS resources, (SELECT count(*) FROM hfj_resource WHERE res_type = 'Patient')::int AS patients, pg_database_size(current_database())::float8 / 1048576 AS mb`,
        );
        const mb = rows[0].mb as number;
        const resources = rows[0].resources as number;
        return {
          resources,
          patients: rows[0].patients as number,
          databaseMB: round(mb),
          bytesPerResource: resources ? Math.round((mb * 1048576) / resources) : null,
        };
      })
    : null;
  // A database larger than the machine's memory (10,000 patients: about 66 GB) cannot be held in
  // the OS cache: reading it all would leave there only what came last. The warm-up alone then
  // brings in what the queries read, as serving them would.
  let prewarmSeconds: number | null = null;
  const databaseBytes = (dbFacts?.databaseMB ?? 0) * 1048576;
  if (conf && !args.cold && databaseBytes > os.totalmem()) {
    console.error(
      `pg_prewarm skipped: the database (${round(databaseBytes / 2 ** 30)} GB) is larger than the machine's memory (${round(os.totalmem() / 2 ** 30)} GB)`,
    );
  } else if (conf && !args.cold) {
    const t0 = performance.now();
    const blocks = await withPg(conf, async (c) => {
      await c.query('CREATE EXTENSION IF NOT EXISTS pg_prewarm');
      const { rows } = await c.query<{ n: string }>(`SELECT coalesce(sum(pg_prewarm(cl.oid, 'read')), 0)::text AS n FROM pg_class cl
        JOIN pg_namespace ns ON ns.oid = cl.relnamespace
        WHERE ns.nspname = 'public' AND cl.relkind IN ('r', 'i') AND (cl.relname LIKE 'hfj\\_%' OR cl.relname LIKE 'idx\\_%' OR cl.relname LIKE '%\\_pkey')`);
      return Number(rows[0].n);
    });
    prewarmSeconds = round((performance.now() - t0) / 1000);
    console.error(`pg_prewarm: ${round((blocks * 8) / 1024)} MB read into the OS cache in ${prewarmSeconds} s`);
  }
  if (args['load-only']) {
    console.log(
      `search: data loaded: ${Object.keys(state.patients).length} patients, ${state.resources} resources (load time in all ${round(state.loadSeconds)} s)${dbFacts ? `; database: ${dbFacts.resources} resources, ${dbFacts.databaseMB} MB (${dbFacts.bytesPerResource} bytes a resource)` : ''}`,
    );
    console.log(
      JSON.stringify({
        bench: 'search',
        loadOnly: true,
        patients: Object.keys(state.patients).length,
        resources: state.resources,
        loadSeconds: round(state.loadSeconds),
        loadedNow: load.loadedNow,
        vacuumSeconds,
        db: dbFacts,
      }),
    );
    throw Object.assign(new Error('load-only'), { done: true });
  }

  // 2. Patient ids, from the server; the loader's record when listing fails.
  const errors: string[] = [];
  let ids: string[];
  try {
    const listed = await listPatients(base);
    const ours = new Set(Object.values(state.patients));
    ids = ours.size ? listed.filter((id) => ours.has(id)) : listed;
    if (ours.size && ids.length !== ours.size) {
      errors.push(`Patient?_count=1000&_elements=id listed ${listed.length} patients, ${ids.length} of the ${ours.size} loaded`);
      ids = [...ours];
    }
  } catch (err) {
    errors.push(`listing patients: ${(err as Error).message}`);
    ids = Object.values(state.patients);
  }
  if (ids.length === 0) throw new Error('no patients');
  const byId = new Map(Object.entries(state.patients).map(([i, id]) => [id, Number(i)]));
  indexOfPatient = byId;
  if (auth) {
    const t0 = performance.now();
    for (const id of ids) if (byId.has(id)) await auth.token(byId.get(id)!);
    console.error(`--auth: ${auth.tokens.size} users' access tokens in ${round((performance.now() - t0) / 1000)} s`);
  }
  // The server's own base URL (its links carry it), for the absolute form of the reference.
  {
    const self = await get(base, `${FHIR}/Observation?patient=${ids[0]}&_count=1`);
    serverBase = self.bundle?.link?.find((l) => l.relation === 'self')?.url.replace(/\/Observation\?.*$/, '') ?? `${base}${FHIR}`;
  }
  const known: Known = { ids, facts: null, smiths: null };
  if (ids.every((id) => byId.has(id))) {
    const gen = generator(loadTemplates(args.templates), seed);
    known.facts = new Map(ids.map((id) => [id, gen.facts(byId.get(id)!)]));
    known.smiths = [...known.facts.values()].filter((f) => f.nameWords.some((w) => w.toLowerCase().startsWith('smith'))).length;
  }
  const QUERIES = makeQueries(known);
  let warmupSeconds: number | null = null;
  if (conf && !args.cold && warmRounds > 0) {
    const t0 = performance.now();
    const wr = prng(54321);
    const warm: string[] = [];
    for (let i = 0; i < warmRounds * ids.length; i++) for (const q of QUERIES) warm.push(q.pick(wr));
    let w = 0;
    const ac = await autocannon({
      url: base,
      connections,
      amount: warm.length,
      timeout: 60,
      requests: [
        {
          method: 'GET',
          headers: ACCEPT,
          setupRequest: (req) => {
            const p = warm[w++ % warm.length];
            return { ...req, path: p, headers: { ...ACCEPT, ...credentialsFor(p) } };
          },
        },
      ],
    });
    warmupSeconds = round((performance.now() - t0) / 1000);
    console.error(`warm-up: ${ac['2xx']} searches (${ac.non2xx + ac.errors + ac.timeouts} failed), ${connections} clients, in ${warmupSeconds} s`);
  }

  // 3. One client, each query in turn.
  const r = prng(12345);
  interface Measured {
    key: QueryKey;
    label: string;
    targetP50Ms: number;
    requests: number;
    p50Ms: number | null;
    p95Ms: number | null;
    p99Ms: number | null;
    maxMs: number | null;
    meanMatches: number | null;
    meanIncluded: number | null;
    meanKB: number | null;
    failed: number;
    firstFailure?: string;
    seqScans: ScanDelta[] | null;
    coresBusy: CoresBusy;
    cpuMsPerRequest: ReturnType<typeof cpuMsPer>;
    meetsTarget: boolean;
  }
  const measured: Measured[] = [];
  let pgClient = conf ? new pg.Client(typeof conf === 'string' ? { connectionString: conf } : conf) : undefined;
  pgClient?.on('error', () => {}); // PostgreSQL stopping under it (--explain restarts the server)
  await pgClient?.connect();
  try {
    // The written forms of the patient search are measured together, request by request in turn,
    // so that each meets the same conditions (the machine's speed drifts over minutes); the other
    // queries one after the other.
    const groups: Query[][] = [QUERIES.filter((q) => q.form), ...QUERIES.filter((q) => !q.form).map((q) => [q])];
    for (const group of groups) {
      const acc = group.map(() => ({ lat: [] as number[], bad: 0, first: undefined as string | undefined, nMatches: 0, nIncluded: 0, bytes: 0 }));
      const before = pgClient ? await scanCounts(pgClient) : undefined;
      const cpu = cpuMeter(server);
      const loopStart = performance.now();
      const rounds = (warmup + requestsPerQuery) * group.length;
      for (let i = 0; i < rounds; i++) {
        const q = group[i % group.length];
        const a = acc[i % group.length];
        const warming = i < warmup * group.length;
        const p = q.pick(r);
        const res = await get(base, p);
        const why = res.error ?? q.check(res.bundle!, p);
        if (warming && !why) continue;
        if (why) {
          a.bad++;
          a.first ??= `GET ${p}: ${why}`;
          if (warming) continue;
        }
        a.lat.push(res.ms);
        a.bytes += res.bytes;
        a.nMatches += res.bundle ? matches(res.bundle).length : 0;
        a.nIncluded += res.bundle ? (res.bundle.entry ?? []).filter((e) => e.search?.mode === 'include').length : 0;
      }
      const coresBusy = cpu.stop();
      const cpuMs = cpuMsPer(coresBusy, (performance.now() - loopStart) / 1000, rounds);
      const after = pgClient ? await scanCounts(pgClient) : undefined;
      group.forEach((q, j) => {
        const { lat, bad, first, nMatches, nIncluded, bytes } = acc[j];
        lat.sort((a, b) => a - b);
        const n = lat.length;
        const p50 = round(quantile(lat, 0.5), 2);
        measured.push({
          key: q.key,
          label: q.label,
          targetP50Ms: q.targetP50Ms,
          requests: n,
          p50Ms: p50,
          p95Ms: round(quantile(lat, 0.95), 2),
          p99Ms: round(quantile(lat, 0.99), 2),
          maxMs: round(lat[n - 1] ?? NaN, 2),
          meanMatches: round(nMatches / n, 1),
          meanIncluded: round(nIncluded / n, 1),
          meanKB: round(bytes / n / 1024, 1),
          failed: bad,
          firstFailure: first,
          seqScans: before && after ? scanDelta(before, after) : null,
          coresBusy,
          cpuMsPerRequest: cpuMs,
          meetsTarget: bad === 0 && p50 !== null && p50 < q.targetP50Ms,
        });
        if (first) errors.push(`${q.key} ${first}`);
        failed += bad;
      });
    }

    // 4. Throughput: the four queries mixed, different patients, --connections clients.
    // The four kinds in turn; the patient search in each of its written forms.
    const forms = QUERIES.filter((q) => q.form);
    const others = QUERIES.filter((q) => !q.form);
    const paths: string[] = [];
    for (let i = 0; i < 4000; i++) {
      const kind = i % (others.length + 1);
      paths.push((kind === 0 ? forms[Math.floor(i / (others.length + 1)) % forms.length] : others[kind - 1]).pick(r));
    }
    let k = 0;
    let notBundle = 0;
    const requests: autocannon.Request[] = [
      {
        method: 'GET',
        headers: ACCEPT,
        setupRequest: (req) => {
          const p = paths[k++ % paths.length];
          return { ...req, path: p, headers: { ...ACCEPT, ...credentialsFor(p) } };
        },
        onResponse: (status, body) => {
          if (status === 200 && !/"resourceType"\s*:\s*"Bundle"/.test(body.slice(0, 1000))) notBundle++;
        },
      },
    ];
    await autocannon({ url: base, connections, duration: 2, requests }); // warm-up, not counted
    notBundle = 0;
    const before = pgClient ? await scanCounts(pgClient) : undefined;
    const cpu = cpuMeter(server);
    const ac = await autocannon({ url: base, connections, duration, requests, timeout: 30 });
    const cores = cpu.stop();
    const after = pgClient ? await scanCounts(pgClient) : undefined;
    const secs = ac.duration || duration;
    const throughput = {
      connections,
      seconds: round(secs, 1),
      searches: ac['2xx'],
      searchesPerSecond: round(ac['2xx'] / secs),
      p50Ms: ac.latency.p50,
      p99Ms: ac.latency.p99,
      maxMs: ac.latency.max,
      non2xx: ac.non2xx,
      errors: ac.errors,
      timeouts: ac.timeouts,
      notBundle,
      failed: ac.non2xx + ac.errors + ac.timeouts + notBundle,
      coresBusy: cores,
      cpuMsPerSearch: cpuMsPer(cores, secs, ac['2xx'] + ac.non2xx),
      seqScans: before && after ? scanDelta(before, after) : null,
      meetsTarget: false,
    };
    throughput.meetsTarget = throughput.failed === 0 && (throughput.searchesPerSecond ?? 0) >= TARGET.searchesPerSecond;
    failed += throughput.failed;
    if (throughput.failed)
      errors.push(`throughput: ${ac.non2xx} non-2xx, ${ac.errors} errors, ${ac.timeouts} timeouts, ${notBundle} 200s that were not a Bundle`);

    // 5. EXPLAIN of each query, through auto_explain.
    let explain: { query: string; plans: string[]; note?: string }[] | null = null;
    if (args.explain) {
      if (!('dataDir' in server) || !pgClient || !conf) {
        explain = [{ query: 'every query', plans: [], note: '--explain needs the server started by this script (no --url)' }];
      } else {
        await pgClient.query(`LOAD 'auto_explain'`); // so that ALTER DATABASE knows the auto_explain.* names
        for (const x of AUTO_EXPLAIN) await pgClient.query(`ALTER DATABASE postgres SET ${x}`);
        await pgClient.end();
        pgClient = undefined;
        try {
          // Sessions opened from now on load auto_explain; a new server opens new ones, and logs
          // PostgreSQL's messages at LOG_LEVEL=debug.
          await stopServer();
          const s = await startOwnServer(dataDir!, false, 'debug', true);
          server = s;
          explain = [];
          for (const q of QUERIES) {
            for (let i = 0; i < 30; i++) await get(s.base, q.pick(r)); // warm the pool's connections and the caches
            await new Promise((res) => setTimeout(res, 500));
            const from = s.lines.length;
            const p = q.pick(r);
            const res = await get(s.base, p);
            await new Promise((res) => setTimeout(res, 1500));
            // The search's own statements (not pg-boss's polling).
            const plans = pgMessages(s.lines.slice(from)).filter((m) => /hfj_/.test(m));
            const p50 = measured.find((m) => m.key === q.key)?.p50Ms;
            explain.push({
              query: `GET ${p} (${round(res.ms, 2)} ms with auto_explain on; p50 ${p50} ms without)`,
              plans,
              ...(plans.length ? {} : { note: "no plan was logged (auto_explain did not load in the server's sessions?)" }),
            });
          }
        } finally {
          await resetAutoExplain(pgConf()!);
        }
      }
    }

    // The written forms of the patient search: the slowest p50 against the fastest.
    const formP50 = measured.filter((m) => QUERIES.find((q) => q.key === m.key)?.form && m.p50Ms !== null).map((m) => m.p50Ms!);
    const formsSpread = {
      fastestP50Ms: Math.min(...formP50),
      slowestP50Ms: Math.max(...formP50),
      ratio: round(Math.max(...formP50) / Math.min(...formP50), 2),
      target: TARGET.formSpread,
      meetsTarget: false,
    };
    formsSpread.meetsTarget = (formsSpread.ratio ?? Infinity) <= TARGET.formSpread;

    // 6. Report
    const loadRate = state.loadSeconds ? round(state.resources / state.loadSeconds) : null;
    console.log(
      `search: ${ids.length} patients, ${state.resources.toLocaleString('en-US')} resources generated${dbFacts ? ` (${dbFacts.resources.toLocaleString('en-US')} in hfj_resource, database ${dbFacts.databaseMB} MB, ${dbFacts.bytesPerResource} bytes a resource)` : ''}; loading took ${round(state.loadSeconds / 60)} min in all (${loadRate ?? 'n/a'} resources/s)`,
    );
    console.log(
      `one client, ${requestsPerQuery} requests per query after ${warmup} warm-up, a random patient each${auth ? "; with its user's access token (Patient?name=: the app's credentials, over all its users)" : ''}:`,
    );
    for (const m of measured) {
      console.log(
        `  ${m.label}\n    p50 ${m.p50Ms} ms, p95 ${m.p95Ms} ms, p99 ${m.p99Ms} ms, max ${m.maxMs} ms (target p50 < ${m.targetP50Ms} ms: ${m.meetsTarget ? 'met' : 'NOT MET'}); ${m.meanMatches} matches${m.meanIncluded ? ` + ${m.meanIncluded} included` : ''}, ${m.meanKB} KB a page${m.failed ? `; ${m.failed} FAILED, first: ${m.firstFailure?.slice(0, 600)}` : ''}`,
      );
      if (m.seqScans) console.log(`    ${describeScans(m.seqScans)}`);
      console.log(`    ${describeCores(m.coresBusy)}`);
      if (m.cpuMsPerRequest) console.log(`    CPU per request: server ${m.cpuMsPerRequest.server} ms, PostgreSQL ${m.cpuMsPerRequest.postgres} ms`);
    }
    console.log(
      `the reference written ${formP50.length} ways: p50 ${formsSpread.fastestP50Ms}-${formsSpread.slowestP50Ms} ms, the slowest ${formsSpread.ratio} times the fastest (target <= ${TARGET.formSpread}: ${formsSpread.meetsTarget ? 'met' : 'NOT MET'})`,
    );
    console.log(
      `${connections} clients, the four queries mixed (the patient search in each of its forms in turn), ${throughput.seconds} s: ${throughput.searchesPerSecond} searches/s (target >= ${TARGET.searchesPerSecond}: ${throughput.meetsTarget ? 'met' : 'NOT MET'}), latency p50 ${throughput.p50Ms} ms, p99 ${throughput.p99Ms} ms, max ${throughput.maxMs} ms`,
    );
    console.log(`  non-2xx ${throughput.non2xx}, errors ${throughput.errors}, timeouts ${throughput.timeouts}, not a Bundle ${throughput.notBundle}`);
    if (throughput.seqScans) console.log(`  ${describeScans(throughput.seqScans)}`);
    console.log(`  ${describeCores(throughput.coresBusy)}`);
    const c = throughput.cpuMsPerSearch;
    if (c) {
      const perSearch = c.server + c.postgres + c.bench;
      console.log(
        `  CPU per search: server ${c.server} ms, PostgreSQL ${c.postgres} ms, bench ${c.bench} ms: at most ~${Math.round((os.availableParallelism() * 1000) / perSearch)} searches/s on ${os.availableParallelism()} idle cores`,
      );
    }
    for (const x of explain ?? []) {
      console.log(`EXPLAIN (auto_explain: ANALYZE, BUFFERS): ${x.query}${x.note ? `\n  ${x.note}` : ''}`);
      for (const plan of x.plans) console.log(plan.replace(/^/gm, '  '));
    }
    for (const e of errors.slice(0, 10)) console.error(`FAILED ${e.slice(0, 1000)}`);
    console.log(
      JSON.stringify({
        bench: 'search',
        patients: ids.length,
        resources: state.resources,
        db: dbFacts,
        loadSeconds: round(state.loadSeconds),
        loadResourcesPerSecond: loadRate,
        loadedNow: load.loadedNow,
        vacuumSeconds,
        prewarmSeconds,
        warmupSeconds,
        queries: measured.map(({ firstFailure, ...m }) => ({ ...m, firstFailure: firstFailure?.slice(0, 300) })),
        throughput,
        explain: explain ? explain.map((x) => ({ query: x.query, plans: x.plans.length, note: x.note })) : null,
        forms: formsSpread,
        auth: !!auth,
        target: TARGET,
        failed,
        allOk: failed === 0 && errors.length === 0,
      }),
    );
    if (errors.length) failed = Math.max(failed, 1);
  } finally {
    await pgClient?.end();
  }
} catch (err) {
  if (!(err as { done?: boolean }).done) {
    console.error(`FAILED ${(err as Error).stack ?? (err as Error).message}`);
    failed = Math.max(failed, 1);
  }
} finally {
  await stopServer();
}
process.exit(failed ? 1 : 0);
