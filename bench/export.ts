/**
 * Bulk Data export benchmark ($export, Bulk Data Access 2.0): a system-level export of about
 * 1,000,000 resources (1,000 patients of ~1,000 resources each in the shape of ../shared/synthea,
 * bench/search-data.ts), end to end, as a Bulk Data client does it.
 *
 *   npx node bench/export.ts [--patients 1000] [--data-dir DIR] [--url http://127.0.0.1:8080] [--types Patient,Observation]
 *                            [--downloads-parallel 4] [--runs 1] [--poll-ms 250] [--timeout-s 3600] [--load-only]
 *                            [--load-concurrency 4] [--seed S] [--pg-url postgres://...] [--client-id ID --client-secret S]
 *                            [--server-pid PID] [--worker [--worker-node-args '...']]
 *
 * The data: --data-dir keeps the embedded PostgreSQL's data folder between runs (the first run
 * loads the patients, about 2,000 resources/s: 8-10 minutes for 1,000; a rerun loads only what is
 * missing; without it, a temporary folder deleted at the end). The server is started here as
 * `npm start` does, on free loopback ports, with FHIR_AUTH=required; an app is made once through the
 * admin API (its credentials kept in <data-dir>/export-bench-app.json) and the patients are written
 * with the app's own credentials (client_id, client_secret, x-oneup-user-id: client), so they are
 * the app's. A data folder of bench/search.ts is reused as it is: one of `--auth` with its app
 * (search-bench-app.json; its records are its users', which a system-level export reads too), one
 * without with FHIR_AUTH=off (the records of no app; the export is then sent without credentials).
 * After a load, VACUUM ANALYZE runs once and the server is restarted, so that the export is
 * measured in a process that did not just load a million resources.
 *
 * The export, --runs times, each after 12 s with the server idle (it gives back the heap a burst
 * of work left after 10 s idle, src/memory.ts): with a client_credentials token (POST /oauth2/token,
 * system/*.*), `GET {base}/$export[?_type=--types]` (Accept: application/fhir+json, Prefer: respond-async) must
 * answer 202 with a Content-Location; that status URL is polled every --poll-ms (faster than its
 * Retry-After, to time the export closely; every 202 must carry X-Progress and Retry-After) until
 * it answers 200 with the manifest (transactionTime, request, requiresAccessToken, output, error).
 * Then every file of output and error is downloaded, --downloads-parallel at a time (a download
 * without credentials must be refused), and each line checked: one resource of the file's type, an
 * id seen once per type (every 50th line and any that does not start as expected parsed in full).
 * Last, DELETE on the status URL must answer 202, the status then 404 (and no part of its files
 * stays in trb_export_part).
 *
 * Measured: the time from kick-off to the manifest and to the last file downloaded, and resources/s
 * of each (the target: 20,000/s on 2 cores from 1,000,000 resources, kick-off to manifest); bytes;
 * the server process's RSS (the export runs there, a pg-boss job): VmRSS before, and during the
 * export both sampled every 200 ms and as VmHWM, which is reset at the kick-off (clear_refs) so it
 * holds the true peak between samples (target < 200 MB); the CPU milliseconds per 1,000 resources of
 * the server, its PostgreSQL (every process under the server, sampled every 500 ms) and this bench,
 * per phase, and the cores other processes kept busy (a WARNING past 0.2: the figures are
 * disturbed); the export's progress as X-Progress told it, and the rate while each type was read.
 * Runs after the first start with the memory the previous downloads left in the server, and with
 * PostgreSQL's buffers warm (the first after a start reads its pages into them).
 * The counts must add up: the manifest's counts = the lines downloaded = the resources the server
 * holds for the app, per type, counted by `GET {type}?_summary=count` and, with database access
 * (the data folder or --pg-url), by SQL on hfj_resource.
 *
 * --url attaches to a running server (its data are loaded there if missing); give the app with
 * --client-id/--client-secret (or a --data-dir holding its file), --server-pid for RSS and CPU,
 * --data-dir (its TRIBUTARY_DATA_DIR) or --pg-url for the SQL counts. A data folder holding more
 * patients than --patients is exported whole. --load-only loads (and VACUUM ANALYZEs) and stops.
 * --worker runs the exports in a `tributary worker` beside the server (EXPORT_CONCURRENCY=0 on the
 * server, 1 on the worker), started as `npx tributary worker` starts it (the Node flags of
 * bin/tributary.ts's first line, or --worker-node-args), and measures that process's RSS and CPU.
 * Prints a summary, then one JSON line. Exits 1 on any failure or mismatch.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  REPO,
  cpuTimes,
  describeCores,
  machineBusySeconds,
  round,
  spawnServer,
  spawnWorker,
  tributaryNodeArgs,
  waitReady,
  type BenchServer,
  type CoresBusy,
  type SpawnedServer,
  type SpawnedWorker,
} from './server.ts';
import { DEFAULT_SEED, loadPatients, loadTemplates, pgConfigFor, readState, withPg, writeState } from './search-data.ts';

const { values: args } = parseArgs({
  options: {
    patients: { type: 'string', default: '1000' },
    'data-dir': { type: 'string' },
    url: { type: 'string' },
    'pg-url': { type: 'string' },
    types: { type: 'string' },
    'downloads-parallel': { type: 'string', default: '4' },
    runs: { type: 'string', default: '1' },
    'poll-ms': { type: 'string', default: '250' },
    'timeout-s': { type: 'string', default: '3600' },
    'load-concurrency': { type: 'string', default: '4' },
    'load-only': { type: 'boolean', default: false },
    seed: { type: 'string', default: DEFAULT_SEED },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'server-pid': { type: 'string' },
    worker: { type: 'boolean', default: false },
    'worker-node-args': { type: 'string' },
    templates: { type: 'string', default: path.resolve(REPO, '..', 'shared', 'synthea') },
  },
});
const clamp = (v: string, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.floor(Number(v)) || lo));
const patientCount = clamp(args.patients, 1, 100_000);
const parallel = clamp(args['downloads-parallel'], 1, 64);
const runs = clamp(args.runs, 1, 20);
const pollMs = clamp(args['poll-ms'], 20, 10_000);
const timeoutMs = clamp(args['timeout-s'], 10, 24 * 3600) * 1000;
const loadConcurrency = clamp(args['load-concurrency'], 1, 16);
const types = args.types
  ? args.types
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean)
  : null;
const seed = args.seed;
const FHIR = '/fhir/r4';
const TARGET = { resourcesPerSecond: 20_000, peakRssMB: 200, resources: 1_000_000 };
const RSS_SAMPLE_MS = 200;
const CPU_SAMPLE_MS = 500;
/** How long the server is left idle before each export (it releases its unused heap after 10 s). */
const IDLE_MS = 12_000;
/** Every n-th line of a file is parsed in full (the others are checked by their first bytes). */
const PARSE_EVERY = 50;
const APP_FILE = 'export-bench-app.json';
/** bench/search.ts --auth keeps its app here. */
const SEARCH_APP_FILE = 'search-bench-app.json';
const STATE_FILE = 'search-bench-state.json';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number) => n.toLocaleString('en-US');
const errMsg = (err: unknown) => (err as Error)?.message ?? String(err);

// ---------------------------------------------------------------------------------------------
// The server's memory: VmRSS sampled, VmHWM (the peak, which clear_refs resets).

function readMem(pid: number): { rssMB: number; hwmMB: number } | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+) kB/.exec(s);
    const hwm = /VmHWM:\s+(\d+) kB/.exec(s);
    return rss && hwm ? { rssMB: Number(rss[1]) / 1024, hwmMB: Number(hwm[1]) / 1024 } : null;
  } catch {
    return null;
  }
}

/** Resets the process's VmHWM to its current RSS (Linux: `echo 5 > /proc/PID/clear_refs`); answers whether it could. */
function resetPeak(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** VmRSS of `pid` every RSS_SAMPLE_MS, with the time (performance.now()) of each sample. */
function rssSampler(pid: number | undefined) {
  const samples: { t: number; mb: number }[] = [];
  const take = () => {
    const m = pid === undefined ? null : readMem(pid);
    if (m) samples.push({ t: performance.now(), mb: m.rssMB });
  };
  take();
  const timer = setInterval(take, RSS_SAMPLE_MS);
  return {
    /** The largest sample taken in [from, to], and when. */
    peak(from: number, to: number): { mb: number; t: number } | null {
      let p: { mb: number; t: number } | null = null;
      for (const s of samples) if (s.t >= from && s.t <= to && (p === null || s.mb > p.mb)) p = s;
      return p;
    },
    count: (from: number, to: number) => samples.filter((s) => s.t >= from && s.t <= to).length,
    take,
    stop: () => clearInterval(timer),
  };
}

// ---------------------------------------------------------------------------------------------
// CPU of the server, its PostgreSQL, this bench and the machine.

/** Every process's parent and CPU seconds (user + system), from /proc/<pid>/stat. */
function processCpu(): Map<number, { ppid: number; seconds: number }> {
  const out = new Map<number, { ppid: number; seconds: number }>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const st = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
      out.set(Number(name), { ppid: Number(f[1]), seconds: (Number(f[11]) + Number(f[12])) / 100 });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * The cores kept busy from now until stop() by the server process (or the worker exporting), the
 * descendants of the server (PostgreSQL: the postmaster, the backends, autovacuum), this bench and
 * everything else. The descendants are
 * sampled every CPU_SAMPLE_MS and each is counted up to its last sample, so that one exiting (the
 * pool closing an idle connection, an autovacuum worker done) keeps what it used but its last
 * moments; a sum over the living ones (bench/server.ts's cpuMeter) loses all it used and may go
 * below zero. null where unknown (no pid).
 */
function cpuTracker(pid: number | undefined, pgRoot: number | undefined = pid): { stop(): CoresBusy } {
  const t0 = performance.now();
  const [b0, m0] = [process.cpuUsage(), machineBusySeconds()];
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  const scan = (initial: boolean) => {
    if (pid === undefined) return;
    const procs = processCpu();
    // The process measured, and PostgreSQL: every process under pgRoot (the server, which may be another process).
    const ours = (p: number) => {
      if (p === pid) return true;
      for (let up = procs.get(p)?.ppid ?? 0, depth = 0; up > 1 && depth < 10; up = procs.get(up)?.ppid ?? 0, depth++) if (up === pgRoot) return true;
      return false;
    };
    for (const [p, { seconds }] of procs) {
      if (!ours(p)) continue;
      // A process first seen after the start began after it: all its time is this span's.
      if (!first.has(p)) first.set(p, initial ? seconds : 0);
      last.set(p, seconds);
    }
  };
  scan(true);
  const timer = setInterval(() => scan(false), CPU_SAMPLE_MS);
  return {
    stop() {
      clearInterval(timer);
      scan(false);
      const secs = (performance.now() - t0) / 1000;
      const b = process.cpuUsage(b0);
      const bench = (b.user + b.system) / 1e6;
      const machine = machineBusySeconds() - m0;
      let srv: number | null = null;
      let pg: number | null = null;
      if (pid !== undefined && last.has(pid)) {
        srv = last.get(pid)! - first.get(pid)!;
        pg = 0;
        for (const [p, t] of last) if (p !== pid) pg += t - first.get(p)!;
      }
      const per = (x: number | null) => round(x === null ? null : x / secs, 2);
      return {
        server: per(srv),
        postgres: per(pg),
        bench: per(bench)!,
        other: per(srv === null || pg === null ? null : Math.max(0, machine - srv - pg - bench)),
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP

/** A URL the server answered (its BASE_URL's host) on the address this bench talks to. */
function local(base: string, url: string): string {
  const u = new URL(url, base);
  const p = u.pathname.replace(/^.*?(\/fhir\/r4\/|\/r4\/)/, `${FHIR}/`);
  return `${base}${p}${u.search}`;
}

async function request(
  url: string,
  headers: Record<string, string>,
  method = 'GET',
  timeout = 120_000,
): Promise<{ status: number; headers: Headers; text: string; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(url, { method, headers, signal: AbortSignal.timeout(timeout) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, ms: performance.now() - t0 };
}

// ---------------------------------------------------------------------------------------------
// A downloaded NDJSON file, checked line by line as it streams.

interface FileCheck {
  kind: 'output' | 'error';
  type: string;
  url: string;
  manifestCount: number;
  status: number;
  contentType: string | null;
  contentLength: number | null;
  lines: number;
  bytes: number;
  parsed: number;
  bad: number;
  duplicates: number;
  firstBad?: string;
  /** Error files: the first issues' diagnostics. */
  diagnostics: string[];
  ms: number;
}

class LineChecker {
  readonly f: FileCheck;
  private readonly prefix: Buffer;
  private readonly ids: Set<string> | null;
  private carry: Buffer[] = [];

  constructor(f: FileCheck, ids: Set<string> | null) {
    this.f = f;
    this.ids = ids;
    this.prefix = Buffer.from(`{"resourceType":"${f.type}","id":"`);
  }

  push(chunk: Buffer): void {
    this.f.bytes += chunk.length;
    let start = 0;
    let nl = chunk.indexOf(10);
    if (this.carry.length) {
      if (nl < 0) {
        this.carry.push(chunk);
        return;
      }
      this.line(Buffer.concat([...this.carry, chunk.subarray(0, nl)]));
      this.carry = [];
      start = nl + 1;
      nl = chunk.indexOf(10, start);
    }
    for (; nl >= 0; nl = chunk.indexOf(10, start)) {
      this.line(chunk.subarray(start, nl));
      start = nl + 1;
    }
    if (start < chunk.length) this.carry.push(chunk.subarray(start));
  }

  end(): void {
    if (!this.carry.length) return;
    this.line(Buffer.concat(this.carry));
    this.carry = [];
    this.wrong('the file does not end with a newline');
  }

  private wrong(why: string): void {
    this.f.bad++;
    this.f.firstBad ??= `line ${this.f.lines}: ${why}`;
  }

  private line(b: Buffer): void {
    const f = this.f;
    f.lines++;
    if (b.length === 0) return this.wrong('an empty line');
    let id: string | undefined;
    const quick = f.kind === 'output' && f.lines % PARSE_EVERY !== 1 && b.length > this.prefix.length && b[b.length - 1] === 125; // }
    if (quick && b.compare(this.prefix, 0, this.prefix.length, 0, this.prefix.length) === 0) {
      const end = b.indexOf(34, this.prefix.length); // "
      if (end > this.prefix.length) id = b.toString('latin1', this.prefix.length, end);
    }
    if (id === undefined) {
      f.parsed++;
      let o: { resourceType?: unknown; id?: unknown; issue?: { diagnostics?: string }[] };
      try {
        o = JSON.parse(b.toString('utf8'));
      } catch {
        return this.wrong(`not JSON: ${b.toString('utf8', 0, Math.min(b.length, 120))}`);
      }
      if (o?.resourceType !== f.type) return this.wrong(`a ${String(o?.resourceType)} in the ${f.type} file`);
      if (f.kind === 'error') {
        if (f.diagnostics.length < 5) f.diagnostics.push(o.issue?.map((i) => i.diagnostics).join('; ') ?? JSON.stringify(o).slice(0, 200));
        return;
      }
      if (typeof o.id !== 'string' || !o.id) return this.wrong('a resource without an id');
      id = o.id;
    }
    if (this.ids) {
      if (this.ids.has(id)) {
        f.duplicates++;
        return this.wrong(`${f.type}/${id} a second time`);
      }
      this.ids.add(id);
    }
  }
}

async function download(url: string, headers: Record<string, string>, f: FileCheck, ids: Set<string> | null): Promise<void> {
  const t0 = performance.now();
  const res = await fetch(url, { headers: { ...headers, accept: 'application/fhir+ndjson' }, signal: AbortSignal.timeout(3600_000) });
  f.status = res.status;
  f.contentType = res.headers.get('content-type');
  f.contentLength = res.headers.get('content-length') === null ? null : Number(res.headers.get('content-length'));
  if (res.status !== 200) {
    f.bad++;
    f.firstBad = `HTTP ${res.status} ${(await res.text()).slice(0, 300)}`;
    f.ms = performance.now() - t0;
    return;
  }
  const check = new LineChecker(f, ids);
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>)
    check.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  check.end();
  f.ms = performance.now() - t0;
  if (!/^application\/(fhir\+)?ndjson/.test(f.contentType ?? '')) {
    f.bad++;
    f.firstBad ??= `Content-Type ${f.contentType}, not application/fhir+ndjson`;
  }
  if (f.contentLength !== null && f.contentLength !== f.bytes) {
    f.bad++;
    f.firstBad ??= `Content-Length ${f.contentLength}, ${f.bytes} bytes received`;
  }
  if (f.lines !== f.manifestCount) {
    f.bad++;
    f.firstBad ??= `${f.lines} lines, the manifest says ${f.manifestCount}`;
  }
}

// ---------------------------------------------------------------------------------------------
// One export, end to end.

interface Manifest {
  transactionTime?: string;
  request?: string;
  requiresAccessToken?: boolean;
  output?: { type: string; url: string; count?: number }[];
  error?: { type: string; url: string; count?: number }[];
}

interface RunResult {
  run: number;
  exportId: string | null;
  kickoffMs: number | null;
  manifestSeconds: number | null;
  downloadedSeconds: number | null;
  downloadSeconds: number | null;
  resourcesPerSecondToManifest: number | null;
  resourcesPerSecondToDownloaded: number | null;
  exported: number;
  lines: number;
  parsedLines: number;
  bytes: number;
  files: number;
  errorLines: number;
  errorDiagnostics: string[];
  polls: number;
  retryAfter: string[];
  progress: { t: number; text: string }[];
  firstResourcesAtSeconds: number | null;
  readingResourcesPerSecond: number | null;
  /** From X-Progress: the rate while a type was being read (types read for 2 s or more). */
  ratesByType: { type: string; seconds: number; resourcesPerSecond: number }[];
  server: { seconds: number | null; transactionTime: string | null; storedParts: number | null; storedBytes: number | null } | null;
  rss: {
    beforeMB: number | null;
    peakExportSampledMB: number | null;
    peakExportHwmMB: number | null;
    peakDownloadSampledMB: number | null;
    /** When the sampled peak of the export was seen, and the X-Progress then. */
    peakExportAt: { seconds: number; progress: string | null } | null;
    hwmReset: boolean;
    samples: number;
  };
  cpu: {
    export: CoresBusy;
    download: CoresBusy | null;
    exportMsPer1000: ReturnType<typeof msPer1000>;
    downloadMsPer1000: ReturnType<typeof msPer1000>;
  } | null;
  perType: { type: string; manifest: number; lines: number; bytes: number; server: number | null; http: number | null; ok: boolean }[];
  countsOk: boolean;
  cleanup: { deleteStatus: number | null; statusAfter: number | null; partsLeft: number | null; ok: boolean };
  unauthenticatedDownload: number | null;
  failures: string[];
  ok: boolean;
}

function msPer1000(
  c: CoresBusy,
  seconds: number,
  resources: number,
): { server: number | null; postgres: number | null; bench: number | null } | null {
  if (!resources) return null;
  const ms = (cores: number | null) => (cores === null ? null : round((cores * seconds * 1000) / (resources / 1000), 1));
  return { server: ms(c.server), postgres: ms(c.postgres), bench: ms(c.bench) };
}

interface Context {
  base: string;
  server: BenchServer;
  /** The process whose descendants are PostgreSQL: the server (also when a worker exports). */
  pgRoot: number | undefined;
  /** The kick-off's, the polls' and the downloads' credentials. */
  creds: Record<string, string>;
  authOn: boolean;
  pgConf: () => Parameters<typeof withPg>[0] | undefined;
  appId: number | null;
  /** What the server holds for the app, per type: by SQL (null: no database access) and by _summary=count. */
  counted: () => Promise<{ sql: Map<string, number> | null; http: Map<string, number | null> }>;
}

/** The export being run (DELETEd if the bench is interrupted). */
let current: { statusUrl: string; creds: Record<string, string> } | null = null;

async function runOnce(run: number, cx: Context): Promise<RunResult> {
  const failures: string[] = [];
  const pid = cx.server.pid;
  const r: RunResult = {
    run,
    exportId: null,
    kickoffMs: null,
    manifestSeconds: null,
    downloadedSeconds: null,
    downloadSeconds: null,
    resourcesPerSecondToManifest: null,
    resourcesPerSecondToDownloaded: null,
    exported: 0,
    lines: 0,
    parsedLines: 0,
    bytes: 0,
    files: 0,
    errorLines: 0,
    errorDiagnostics: [],
    polls: 0,
    retryAfter: [],
    progress: [],
    firstResourcesAtSeconds: null,
    readingResourcesPerSecond: null,
    ratesByType: [],
    server: null,
    rss: {
      beforeMB: null,
      peakExportSampledMB: null,
      peakExportHwmMB: null,
      peakDownloadSampledMB: null,
      peakExportAt: null,
      hwmReset: false,
      samples: 0,
    },
    cpu: null,
    perType: [],
    countsOk: false,
    cleanup: { deleteStatus: null, statusAfter: null, partsLeft: null, ok: false },
    unauthenticatedDownload: null,
    failures,
    ok: false,
  };
  const fhirHeaders = { ...cx.creds, accept: 'application/fhir+json' };
  // The server gives back the heap a burst of work left once it has been idle for 10 s
  // (src/memory.ts): the RSS before is that of an idle server, not of the last run's downloads.
  await sleep(IDLE_MS);
  const rss = rssSampler(pid);
  try {
    const before = pid === undefined ? null : readMem(pid);
    r.rss.beforeMB = before ? round(before.rssMB) : null;
    r.rss.hwmReset = pid !== undefined && resetPeak(pid);
    const cpu = cpuTracker(pid, cx.pgRoot);
    const t0 = performance.now();

    // Kick-off
    const q = types ? `?_type=${encodeURIComponent(types.join(','))}` : '';
    const kick = await request(`${cx.base}${FHIR}/$export${q}`, { ...fhirHeaders, prefer: 'respond-async' });
    r.kickoffMs = round(kick.ms, 1);
    const location = kick.headers.get('content-location');
    if (kick.status !== 202 || !location) {
      failures.push(`kick-off GET ${FHIR}/$export${q}: HTTP ${kick.status}, Content-Location ${location}: ${kick.text.slice(0, 400)}`);
      return r;
    }
    const statusUrl = local(cx.base, location);
    r.exportId = /\/\$export-status\/([^/?]+)/.exec(statusUrl)?.[1] ?? null;
    current = { statusUrl, creds: cx.creds };

    // Poll
    let manifest: Manifest | null = null;
    let lastNote = performance.now();
    let missingHeaders = 0;
    for (;;) {
      const elapsed = performance.now() - t0;
      if (elapsed > timeoutMs) {
        failures.push(`no manifest after ${Math.round(elapsed / 1000)} s (--timeout-s); last X-Progress: ${r.progress.at(-1)?.text}`);
        break;
      }
      await sleep(pollMs);
      const st = await request(statusUrl, fhirHeaders);
      r.polls++;
      const t = round((performance.now() - t0) / 1000, 2)!;
      if (st.status === 202) {
        const progress = st.headers.get('x-progress');
        const retry = st.headers.get('retry-after');
        if (progress === null || retry === null) missingHeaders++;
        if (retry !== null && !r.retryAfter.includes(retry)) r.retryAfter.push(retry);
        if (progress !== null && progress !== r.progress.at(-1)?.text) r.progress.push({ t, text: progress });
        if (performance.now() - lastNote > 10_000) {
          lastNote = performance.now();
          console.error(`export: ${t} s, X-Progress: ${progress}`);
        }
        continue;
      }
      if (st.status === 200) {
        try {
          manifest = JSON.parse(st.text) as Manifest;
        } catch {
          failures.push(`the status URL answered 200 with no JSON: ${st.text.slice(0, 300)}`);
        }
        break;
      }
      failures.push(`the status URL answered HTTP ${st.status} after ${t} s: ${st.text.slice(0, 500)}`);
      break;
    }
    const tManifest = performance.now();
    const exportCores = cpu.stop();
    const exportSeconds = (tManifest - t0) / 1000;
    const hwm = pid === undefined ? null : readMem(pid);
    rss.take();
    const peak = rss.peak(t0, tManifest + 1);
    r.rss.peakExportSampledMB = round(peak?.mb ?? null);
    if (peak) {
      const at = round((peak.t - t0) / 1000, 1)!;
      r.rss.peakExportAt = { seconds: at, progress: r.progress.filter((p) => p.t <= at).at(-1)?.text ?? null };
    }
    r.rss.peakExportHwmMB = r.rss.hwmReset && hwm ? round(hwm.hwmMB) : null;
    if (missingHeaders) failures.push(`${missingHeaders} of the 202s of the status URL lacked X-Progress or Retry-After`);
    r.manifestSeconds = round(exportSeconds, 2);
    // Progress: when resources first showed, and the rate from then to the last report.
    const counts = r.progress.map((p) => ({ t: p.t, n: Number(/^(\d+) resources/.exec(p.text)?.[1] ?? NaN) })).filter((p) => p.n > 0);
    if (counts.length) {
      r.firstResourcesAtSeconds = counts[0].t;
      const [a, b] = [counts[0], counts.at(-1)!];
      r.readingResourcesPerSecond = b.t > a.t ? round((b.n - a.n) / (b.t - a.t)) : null;
    }
    // The rate while each type was read: between consecutive reports that name the same type.
    const byType = new Map<string, { n: number; s: number }>();
    const named = r.progress
      .map((p) => {
        const m = /^(\d+) resources; (\w+) \(type/.exec(p.text);
        return m ? { t: p.t, n: Number(m[1]), type: m[2] } : null;
      })
      .filter((x) => x !== null);
    for (let i = 1; i < named.length; i++) {
      const [a, b] = [named[i - 1], named[i]];
      if (a.type !== b.type) continue;
      const x = byType.get(a.type) ?? byType.set(a.type, { n: 0, s: 0 }).get(a.type)!;
      x.n += b.n - a.n;
      x.s += b.t - a.t;
    }
    r.ratesByType = [...byType]
      .filter(([, x]) => x.s >= 2)
      .map(([type, x]) => ({ type, seconds: round(x.s, 1)!, resourcesPerSecond: round(x.n / x.s)! }));
    if (!manifest) return r;

    // The manifest
    if (!manifest.transactionTime || Number.isNaN(Date.parse(manifest.transactionTime)))
      failures.push(`manifest: transactionTime ${manifest.transactionTime}`);
    if (typeof manifest.request !== 'string' || !manifest.request.includes('$export')) failures.push(`manifest: request ${manifest.request}`);
    if (cx.authOn ? manifest.requiresAccessToken !== true : typeof manifest.requiresAccessToken !== 'boolean')
      failures.push(`manifest: requiresAccessToken ${manifest.requiresAccessToken}`);
    if (!Array.isArray(manifest.output) || !Array.isArray(manifest.error)) {
      failures.push(`manifest: output or error is not an array: ${JSON.stringify(manifest).slice(0, 300)}`);
      return r;
    }
    for (const o of [...manifest.output, ...manifest.error]) {
      if (typeof o.type !== 'string' || typeof o.url !== 'string' || typeof o.count !== 'number')
        failures.push(`manifest: an entry without type, url or count: ${JSON.stringify(o).slice(0, 200)}`);
    }
    r.exported = manifest.output.reduce((n, o) => n + (o.count ?? 0), 0);
    r.resourcesPerSecondToManifest = round(r.exported / exportSeconds);
    if (types) {
      const extra = manifest.output.filter((o) => !types.includes(o.type)).map((o) => o.type);
      if (extra.length) failures.push(`manifest: output of types not asked for: ${[...new Set(extra)].join(', ')}`);
    }
    // The export's row, before DELETE removes it: the server's own account of its time and its stored bytes.
    const conf = cx.pgConf();
    if (conf && r.exportId) {
      r.server = await withPg(conf, async (c) => {
        const { rows } = await c.query(
          `SELECT extract(epoch FROM completed_at - created_at)::float8 AS s, transaction_time,
             (SELECT count(*)::int FROM trb_export_part WHERE export_id = $1) AS parts,
             (SELECT coalesce(sum(length(body)), 0)::float8 FROM trb_export_part WHERE export_id = $1) AS bytes
           FROM trb_export WHERE id = $1`,
          [r.exportId],
        );
        const x = rows[0];
        return x
          ? { seconds: round(x.s, 2), transactionTime: x.transaction_time?.toISOString() ?? null, storedParts: x.parts, storedBytes: x.bytes }
          : { seconds: null, transactionTime: null, storedParts: null, storedBytes: null };
      }).catch((err) => {
        console.error(`reading the export's row: ${errMsg(err)}`);
        return null;
      });
    }

    // A download needs the credentials that started the export.
    const all = [
      ...manifest.output.map((o) => ({ ...o, kind: 'output' as const })),
      ...manifest.error.map((o) => ({ ...o, kind: 'error' as const })),
    ].sort((a, b) => (b.count ?? 0) - (a.count ?? 0));
    if (cx.authOn && all.length) {
      const res = await fetch(local(cx.base, all[0].url), { headers: { accept: 'application/fhir+ndjson' }, signal: AbortSignal.timeout(60_000) });
      await res.arrayBuffer();
      r.unauthenticatedDownload = res.status;
      if (res.status < 400) failures.push(`a file was served without credentials (HTTP ${res.status})`);
    }

    // Downloads
    const dlCpu = cpuTracker(pid, cx.pgRoot);
    const t1 = performance.now();
    const ids = new Map<string, Set<string>>();
    const checks: FileCheck[] = all.map((o) => ({
      kind: o.kind,
      type: o.type,
      url: local(cx.base, o.url),
      manifestCount: o.count ?? 0,
      status: 0,
      contentType: null,
      contentLength: null,
      lines: 0,
      bytes: 0,
      parsed: 0,
      bad: 0,
      duplicates: 0,
      diagnostics: [],
      ms: 0,
    }));
    let next = 0;
    const note = setInterval(() => {
      const done = checks.filter((c) => c.status !== 0).length;
      const lines = checks.reduce((n, c) => n + c.lines, 0);
      const mb = checks.reduce((n, c) => n + c.bytes, 0) / 1e6;
      console.error(
        `downloading: ${round((performance.now() - t1) / 1000)} s, ${done} of ${checks.length} files begun, ${fmt(lines)} lines, ${round(mb)} MB`,
      );
    }, 10_000);
    try {
      await Promise.all(
        Array.from({ length: Math.min(parallel, checks.length) }, async () => {
          while (next < checks.length) {
            const f = checks[next++];
            const set = f.kind === 'output' ? (ids.get(f.type) ?? ids.set(f.type, new Set()).get(f.type)!) : null;
            try {
              await download(f.url, cx.creds, f, set);
            } catch (err) {
              f.bad++;
              f.firstBad ??= `download failed: ${errMsg(err)}`;
            }
          }
        }),
      );
    } finally {
      clearInterval(note);
    }
    const tDone = performance.now();
    const dlCores = dlCpu.stop();
    rss.take();
    r.rss.peakDownloadSampledMB = round(rss.peak(tManifest, tDone + 1)?.mb ?? null);
    r.rss.samples = rss.count(t0, tDone + 1);
    r.downloadSeconds = round((tDone - t1) / 1000, 2);
    r.downloadedSeconds = round((tDone - t0) / 1000, 2);
    const outputs = checks.filter((c) => c.kind === 'output');
    r.files = checks.length;
    r.lines = outputs.reduce((n, c) => n + c.lines, 0);
    r.parsedLines = checks.reduce((n, c) => n + c.parsed, 0);
    r.bytes = checks.reduce((n, c) => n + c.bytes, 0);
    r.errorLines = checks.filter((c) => c.kind === 'error').reduce((n, c) => n + c.lines, 0);
    r.errorDiagnostics = checks.flatMap((c) => c.diagnostics).slice(0, 5);
    r.resourcesPerSecondToDownloaded = round(r.lines / ((tDone - t0) / 1000));
    if (r.errorLines) failures.push(`the export reported ${r.errorLines} errors: ${r.errorDiagnostics.join(' | ').slice(0, 500)}`);
    for (const c of checks)
      if (c.bad) failures.push(`${c.kind} file ${c.type} (${c.url.replace(cx.base, '')}): ${c.bad} wrong, first: ${c.firstBad}`);
    if (r.server?.storedBytes !== null && r.server?.storedBytes !== undefined && r.server.storedBytes !== r.bytes)
      failures.push(`${r.bytes} bytes downloaded, ${r.server.storedBytes} stored in trb_export_part`);
    r.cpu = {
      export: exportCores,
      download: dlCores,
      exportMsPer1000: msPer1000(exportCores, exportSeconds, r.exported),
      downloadMsPer1000: msPer1000(dlCores, (tDone - t1) / 1000, r.lines),
    };

    // The counts: manifest = lines = what the server holds.
    const held = await cx.counted();
    const typeNames = new Set([
      ...manifest.output.map((o) => o.type),
      ...(held.sql?.keys() ?? []),
      ...[...held.http].filter(([, n]) => n).map(([t]) => t),
    ]);
    let countsOk = true;
    for (const type of [...typeNames].sort()) {
      const m = manifest.output.filter((o) => o.type === type).reduce((n, o) => n + (o.count ?? 0), 0);
      const l = outputs.filter((c) => c.type === type).reduce((n, c) => n + c.lines, 0);
      const bytes = outputs.filter((c) => c.type === type).reduce((n, c) => n + c.bytes, 0);
      const s = held.sql ? (held.sql.get(type) ?? 0) : null;
      const h = held.http.has(type) ? held.http.get(type)! : null;
      const ok = m === l && (s === null || s === m) && (h === null || h === m);
      if (!ok) {
        countsOk = false;
        failures.push(`${type}: manifest ${m}, lines ${l}, server ${s ?? 'n/a'} (SQL), ${h ?? 'n/a'} (_summary=count)`);
      }
      r.perType.push({ type, manifest: m, lines: l, bytes, server: s, http: h, ok });
    }
    r.countsOk = countsOk;

    // DELETE: the export and its files go.
    const del = await request(statusUrl, fhirHeaders, 'DELETE');
    r.cleanup.deleteStatus = del.status;
    const after = await request(statusUrl, fhirHeaders);
    r.cleanup.statusAfter = after.status;
    if (conf && r.exportId)
      r.cleanup.partsLeft = await withPg(conf, async (c) => {
        const { rows } = await c.query(`SELECT count(*)::int AS n FROM trb_export_part WHERE export_id = $1`, [r.exportId]);
        return rows[0].n as number;
      });
    r.cleanup.ok = del.status === 202 && after.status === 404 && (r.cleanup.partsLeft ?? 0) === 0;
    if (!r.cleanup.ok)
      failures.push(`cleanup: DELETE answered ${del.status}, the status then ${after.status}, ${r.cleanup.partsLeft ?? 'n/a'} parts left`);
    else current = null;
  } catch (err) {
    failures.push(`run ${run}: ${(err as Error).stack ?? errMsg(err)}`);
  } finally {
    rss.stop();
    r.ok = failures.length === 0;
  }
  return r;
}

// ---------------------------------------------------------------------------------------------

function describeRun(r: RunResult, held: number): string[] {
  const out: string[] = [];
  const rate = (x: number | null) => (x === null ? 'n/a' : fmt(x));
  const met = (ok: boolean) => (ok ? 'met' : 'NOT MET');
  const small = held < TARGET.resources * 0.9 ? ` (the target is for ${fmt(TARGET.resources)} resources)` : '';
  if (r.kickoffMs === null || r.exportId === null) {
    out.push(`run ${r.run}: no export`);
    for (const f of r.failures.slice(0, 10)) out.push(`  FAILED ${f.slice(0, 1000)}`);
    return out;
  }
  out.push(
    `run ${r.run}: ${fmt(r.exported)} resources exported; kick-off answered in ${r.kickoffMs} ms; manifest after ${r.manifestSeconds} s: ${rate(r.resourcesPerSecondToManifest)} resources/s (target >= ${fmt(TARGET.resourcesPerSecond)}: ${met((r.resourcesPerSecondToManifest ?? 0) >= TARGET.resourcesPerSecond)}${small})`,
  );
  if (r.downloadedSeconds !== null)
    out.push(
      `  all ${r.files} files downloaded (${parallel} at a time, ${r.downloadSeconds} s) after ${r.downloadedSeconds} s from the kick-off: ${rate(r.resourcesPerSecondToDownloaded)} resources/s; ${fmt(r.bytes)} bytes (${round(r.bytes / 2 ** 20)} MiB, ${r.lines ? Math.round(r.bytes / r.lines) : 'n/a'} bytes a resource)`,
    );
  if (r.server)
    out.push(
      `  the server's account: created -> completed ${r.server.seconds} s; ${r.server.storedParts} parts, ${fmt(r.server.storedBytes ?? 0)} bytes stored`,
    );
  const phases: string[] = [];
  for (const p of r.progress) {
    const kind = p.text.replace(/\d+/g, 'N');
    if (!phases.some((x) => x.endsWith(`"${kind}"`))) phases.push(`${p.t} s "${kind}"`);
  }
  out.push(
    `  progress (${r.polls} polls every ${pollMs} ms; Retry-After ${r.retryAfter.join(', ') || 'n/a'}): first resources at ${r.firstResourcesAtSeconds ?? 'n/a'} s, then ${rate(r.readingResourcesPerSecond)} resources/s to the last X-Progress (${r.progress.at(-1)?.text ?? 'none'})`,
  );
  if (phases.length) out.push(`  X-Progress seen first: ${phases.slice(0, 12).join('; ')}`);
  if (r.ratesByType.length)
    out.push(
      `  reading rate by type (from X-Progress): ${r.ratesByType
        .map((x) => {
          const t = r.perType.find((p) => p.type === x.type);
          const mbs = t?.lines
            ? ` = ${round((x.resourcesPerSecond * t.bytes) / t.lines / 1e6)} MB/s (${Math.round(t.bytes / t.lines)} bytes each)`
            : '';
          return `${x.type} ${fmt(x.resourcesPerSecond)}/s${mbs} over ${x.seconds} s`;
        })
        .join(', ')}`,
    );
  const m = r.rss;
  const peak = m.peakExportHwmMB ?? m.peakExportSampledMB;
  out.push(
    `  server RSS: ${m.beforeMB ?? 'n/a'} MB before; during the export peak ${m.peakExportHwmMB ?? 'n/a'} MB (VmHWM${m.hwmReset ? ', reset at the kick-off' : ': not reset'}), ${m.peakExportSampledMB ?? 'n/a'} MB sampled every ${RSS_SAMPLE_MS} ms (target < ${TARGET.peakRssMB} MB: ${peak === null ? 'n/a' : met(peak < TARGET.peakRssMB)}); during the downloads ${m.peakDownloadSampledMB ?? 'n/a'} MB sampled`,
  );
  if (m.beforeMB !== null && peak !== null)
    out.push(
      `    the export added ${round(peak - m.beforeMB)} MB to the process${m.peakExportAt ? `; the sampled peak at ${m.peakExportAt.seconds} s (X-Progress: ${m.peakExportAt.progress ?? 'none yet'})` : ''}`,
    );
  if (r.cpu) {
    const c = r.cpu;
    out.push(`  export: ${describeCores(c.export)}`);
    if (c.exportMsPer1000)
      out.push(`    CPU per 1,000 resources: server ${c.exportMsPer1000.server} ms, PostgreSQL ${c.exportMsPer1000.postgres} ms`);
    if (c.download) out.push(`  downloads: ${describeCores(c.download)}`);
    if (c.downloadMsPer1000)
      out.push(
        `    CPU per 1,000 resources: server ${c.downloadMsPer1000.server} ms, PostgreSQL ${c.downloadMsPer1000.postgres} ms, bench ${c.downloadMsPer1000.bench} ms`,
      );
  }
  out.push(
    `  counts: manifest ${fmt(r.perType.reduce((n, t) => n + t.manifest, 0))}, lines downloaded ${fmt(r.lines)}, server ${fmt(r.perType.reduce((n, t) => n + (t.server ?? t.http ?? 0), 0))} over ${r.perType.length} types: ${r.countsOk ? 'they add up' : 'MISMATCH'}; ${fmt(r.parsedLines)} lines parsed in full; error lines ${r.errorLines}`,
  );
  for (const t of r.perType.filter((x) => !x.ok))
    out.push(`    ${t.type}: manifest ${t.manifest}, lines ${t.lines}, SQL ${t.server ?? 'n/a'}, _summary=count ${t.http ?? 'n/a'}`);
  out.push(
    `  cleanup: DELETE ${r.cleanup.deleteStatus}, the status then ${r.cleanup.statusAfter}, parts left ${r.cleanup.partsLeft ?? 'n/a'}; a download without credentials: ${r.unauthenticatedDownload ?? 'n/a'}`,
  );
  for (const f of r.failures.slice(0, 10)) out.push(`  FAILED ${f.slice(0, 1000)}`);
  return out;
}

// ---------------------------------------------------------------------------------------------

const dataDir = args['data-dir']
  ? path.resolve(args['data-dir'])
  : args.url
    ? undefined
    : fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-export-'));
const temporary = !args['data-dir'] && !args.url;

/** The app's credentials: given, or kept in the data folder (this bench's, or bench/search.ts --auth's). */
function savedApp(): { client_id: string; client_secret: string; file: string } | null {
  if (args['client-id'] && args['client-secret']) return { client_id: args['client-id'], client_secret: args['client-secret'], file: '(given)' };
  for (const name of [APP_FILE, SEARCH_APP_FILE]) {
    const file = dataDir && path.join(dataDir, name);
    if (file && fs.existsSync(file)) return { ...(JSON.parse(fs.readFileSync(file, 'utf8')) as { client_id: string; client_secret: string }), file };
  }
  return null;
}
const loadedBefore = dataDir && fs.existsSync(path.join(dataDir, STATE_FILE)) ? Object.keys(readState(dataDir, seed).patients).length : 0;
let app = savedApp();
// A data folder of bench/search.ts without --auth: its records are no app's; FHIR_AUTH stays off.
const authOn = args.url ? app !== null : app !== null || loadedBefore === 0;
const adminKey = `${crypto.randomUUID()}${crypto.randomUUID()}`;
if (!args.url && authOn) {
  process.env.FHIR_AUTH = 'required';
  process.env.ADMIN_KEY = adminKey;
}
// --worker: the server takes no export jobs; the worker does.
if (args.worker) process.env.EXPORT_CONCURRENCY = '0';
if (args.worker && args.url) throw new Error('--worker starts its own server and worker: leave out --url');

let server: SpawnedServer | BenchServer | undefined;
let worker: (SpawnedWorker & { nodeArgs: string[] }) | undefined;
let exitCode = 0;
const stopServer = async () => {
  const [w, s] = [worker, server];
  [worker, server] = [undefined, undefined];
  await w?.stop();
  await s?.stop();
};
const onSignal = () => {
  const c = current;
  const cleanup = c
    ? request(c.statusUrl, { ...c.creds, accept: 'application/fhir+json' }, 'DELETE', 10_000).catch(() => undefined)
    : Promise.resolve(undefined);
  void cleanup.then(stopServer).finally(() => process.exit(130));
};
process.once('SIGINT', onSignal).once('SIGTERM', onSignal);

const start = () => spawnServer(dataDir!, { remove: temporary, logLevel: 'warn', keepLines: true, readyTimeoutMs: 180_000, stopTimeoutMs: 120_000 });

try {
  if (args.url) {
    const base = args.url.replace(/\/+$/, '');
    await waitReady(base, undefined, 180_000);
    const pid = args['server-pid'] ? Number(args['server-pid']) : undefined;
    server = { base, pid, rssMB: () => (pid ? (readMem(pid)?.rssMB ?? null) : null), cpu: () => (pid ? cpuTimes(pid) : null), stop: async () => {} };
  } else {
    server = await start();
  }
  let base = server.base;
  const pgConf = (): Parameters<typeof withPg>[0] | undefined =>
    args['pg-url'] ?? (dataDir && fs.existsSync(path.join(dataDir, 'pg-password')) ? pgConfigFor(dataDir) : undefined);

  // 1. The app
  if (authOn && !app) {
    const made = await fetch(`${base}/admin/apps`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'export bench' }),
    });
    const text = await made.text();
    if (made.status >= 300) throw new Error(`POST /admin/apps: HTTP ${made.status} ${text.slice(0, 300)}`);
    const c = JSON.parse(text) as { client_id: string; client_secret: string };
    const file = path.join(dataDir!, APP_FILE);
    fs.writeFileSync(file, JSON.stringify({ client_id: c.client_id, client_secret: c.client_secret }), { mode: 0o600 });
    app = { ...c, file };
  }
  const appHeaders: Record<string, string> = app ? { client_id: app.client_id, client_secret: app.client_secret, 'x-oneup-user-id': 'client' } : {};
  console.error(
    authOn
      ? `the app: ${app!.client_id} (${app!.file}); FHIR_AUTH=required`
      : 'no app: a data folder loaded without authentication (bench/search.ts without --auth); FHIR_AUTH=off, the export sent without credentials',
  );

  // 2. The data
  const load = await loadPatients({
    base,
    patients: patientCount,
    seed,
    dataDir,
    concurrency: loadConcurrency,
    templatesDir: args.templates,
    auth: authOn ? { reader: appHeaders, writer: async () => appHeaders } : undefined,
  });
  const state = load.state;
  if (load.loadedNow.patients)
    console.error(
      `loaded ${load.loadedNow.patients} patients (${fmt(load.loadedNow.resources)} resources) in ${round(load.loadedNow.seconds)} s: ${round(load.loadedNow.resources / load.loadedNow.seconds)} resources/s`,
    );
  let conf = pgConf();
  let vacuumSeconds: number | null = null;
  if (conf && state.analyzedAt !== Object.keys(state.patients).length) {
    console.error('VACUUM ANALYZE ...');
    const t0 = performance.now();
    await withPg(conf, (c) => c.query('VACUUM ANALYZE'));
    vacuumSeconds = round((performance.now() - t0) / 1000);
    state.analyzedAt = Object.keys(state.patients).length;
    writeState(dataDir, state);
    console.error(`VACUUM ANALYZE took ${vacuumSeconds} s`);
  }
  const patients = Object.keys(state.patients).length;
  if (args['load-only']) {
    console.log(
      `export: data loaded: ${patients} patients, ${fmt(state.resources)} resources generated (load time in all ${round(state.loadSeconds)} s)`,
    );
    console.log(JSON.stringify({ bench: 'export', loadOnly: true, patients, resources: state.resources, loadedNow: load.loadedNow, vacuumSeconds }));
    throw Object.assign(new Error('load-only'), { done: true });
  }
  // A process that just loaded a million resources holds more memory than one that did not: the
  // export is measured in a fresh one.
  if (load.loadedNow.patients && 'dataDir' in server) {
    console.error('restarting the server (a fresh process for the export)');
    await stopServer();
    server = await start();
    base = server.base;
    conf = pgConf();
  }

  if (args.worker && 'dataDir' in server) {
    const nodeArgs = args['worker-node-args'] === undefined ? tributaryNodeArgs() : args['worker-node-args'].split(' ').filter(Boolean);
    worker = { ...(await spawnWorker(server, { EXPORT_CONCURRENCY: '1' }, nodeArgs)), nodeArgs };
    await sleep(IDLE_MS);
  }

  // 3. The app's partition, exports left running by an interrupted run, the token.
  let appId: number | null = authOn ? null : 0;
  if (conf && app) {
    appId = await withPg(conf, async (c) => {
      const { rows } = await c.query(`SELECT id FROM trb_app WHERE client_id = $1`, [app!.client_id]);
      return (rows[0]?.id as number | undefined) ?? null;
    });
  }
  let creds: Record<string, string> = {};
  if (authOn) {
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: app!.client_id, client_secret: app!.client_secret });
    const res = await fetch(`${base}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form,
      signal: AbortSignal.timeout(30_000),
    });
    const tok = (await res.json()) as { access_token?: string; scope?: string; expires_in?: number };
    if (res.status !== 200 || typeof tok.access_token !== 'string')
      throw new Error(`POST /oauth2/token (client_credentials): HTTP ${res.status} ${JSON.stringify(tok).slice(0, 300)}`);
    console.error(`client_credentials token: scope ${tok.scope}, expires in ${tok.expires_in} s`);
    creds = { authorization: `Bearer ${tok.access_token}` };
  }
  if (conf && appId !== null) {
    const left = await withPg(conf, async (c) => {
      const { rows } = await c.query(`SELECT id FROM trb_export WHERE app_id = $1 AND status IN ('accepted', 'in-progress')`, [appId]);
      return rows.map((x) => x.id as string);
    }).catch(() => [] as string[]);
    for (const id of left) {
      const del = await request(`${base}${FHIR}/$export-status/${id}`, { ...creds, accept: 'application/fhir+json' }, 'DELETE');
      console.error(`an export left by an earlier run (${id}) deleted: HTTP ${del.status}`);
    }
  }

  // What the server holds for the app, counted after each export (counting first would warm its caches).
  const templateTypes = new Set(
    loadTemplates(args.templates).flatMap((t) => [...t.shared, ...t.clinical].map((e) => e.resource.resourceType as string)),
  );
  const counted = async () => {
    let sql: Map<string, number> | null = null;
    const c = pgConf();
    if (c && appId !== null) {
      sql = await withPg(c, async (db) => {
        const { rows } = await db.query(
          `SELECT res_type, count(*)::int AS n FROM hfj_resource WHERE partition_id = $1 AND res_deleted_at IS NULL GROUP BY res_type`,
          [appId],
        );
        return new Map(rows.filter((x) => !types || types.includes(x.res_type)).map((x) => [x.res_type as string, x.n as number]));
      });
    }
    const http = new Map<string, number | null>();
    for (const type of new Set([...(types ?? templateTypes), ...(sql?.keys() ?? [])])) {
      const res = await request(`${server!.base}${FHIR}/${type}?_summary=count&_total=accurate`, { ...creds, accept: 'application/fhir+json' });
      const total = res.status === 200 ? (JSON.parse(res.text) as { total?: number }).total : undefined;
      if (typeof total !== 'number') console.error(`GET ${type}?_summary=count: HTTP ${res.status} ${res.text.slice(0, 200)}`);
      http.set(type, typeof total === 'number' ? total : null);
    }
    return { sql, http };
  };

  // 4. The exports: in the server, or (--worker) in a `tributary worker` beside it, whose RSS and CPU are then measured.
  let measured: BenchServer = server;
  if (worker) {
    const w = worker;
    const s = server;
    measured = {
      base,
      pid: w.pid,
      rssMB: w.rssMB,
      // The worker's CPU, and its PostgreSQL's (the server's children).
      cpu: () => {
        const [own, srv] = [cpuTimes(w.pid), s.pid ? cpuTimes(s.pid) : null];
        return own && srv ? { server: own.server, children: srv.children } : null;
      },
      stop: async () => {},
    };
    console.error(`the exports run in a worker process (pid ${w.pid}, node ${w.nodeArgs.join(' ') || '(no flags)'}); its RSS and CPU are measured`);
  }
  const cx: Context = { base, server: measured, pgRoot: server.pid, creds, authOn, pgConf, appId, counted };
  const results: RunResult[] = [];
  for (let i = 1; i <= runs; i++) {
    console.error(`export run ${i} of ${runs} ...`);
    const r = await runOnce(i, cx);
    results.push(r);
    if (r.failures.some((f) => f.startsWith('kick-off'))) break; // the server does not export (yet)
  }
  const held = results.find((r) => r.perType.length)?.perType.reduce((n, t) => n + (t.server ?? t.http ?? 0), 0) ?? null;
  console.log(
    `export: ${patients} patients, ${fmt(state.resources)} resources generated (loading took ${round(state.loadSeconds / 60)} min in all); ${held === null ? 'n/a' : fmt(held)} held for the ${authOn ? 'app' : 'server (no auth)'}${types ? ` of types ${types.join(', ')}` : ''}; ${os.availableParallelism()} cores`,
  );
  for (const r of results) for (const line of describeRun(r, held ?? state.resources)) console.log(line);
  const failed = results.some((r) => !r.ok) || results.length === 0;
  if (failed && 'lines' in server && server.lines.length) {
    const lines = server.lines.filter((l) => /export|"level":(50|60)/.test(l)).slice(-10);
    for (const l of lines) console.error(`server: ${l.slice(0, 1500)}`);
  }
  console.log(
    JSON.stringify({
      bench: 'export',
      patients,
      resourcesGenerated: state.resources,
      resourcesHeld: held,
      types,
      auth: authOn,
      cores: os.availableParallelism(),
      loadedNow: load.loadedNow,
      vacuumSeconds,
      exportsIn: worker ? { process: 'worker', nodeArgs: worker.nodeArgs } : { process: 'server' },
      downloadsParallel: parallel,
      pollMs,
      runs: results.map(({ progress, ...r }) => ({ ...r, progress: progress.slice(-20), failures: r.failures.map((f) => f.slice(0, 500)) })),
      target: TARGET,
      allOk: !failed,
    }),
  );
  if (failed) exitCode = 1;
} catch (err) {
  if (!(err as { done?: boolean }).done) {
    console.error(`FAILED ${(err as Error).stack ?? errMsg(err)}`);
    exitCode = 1;
  }
} finally {
  await stopServer();
}
process.exit(exitCode);
