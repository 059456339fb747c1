/**
 * Shared by the load benchmarks: starts Tributary as a separate process, exactly as `npm start`
 * does (Node 24 from node_modules, `node --max-semi-space-size=16 src/server.ts`), with a fresh data folder (embedded
 * PostgreSQL) on free loopback ports; or attaches to a running server given `--url`.
 *
 * Exposes the base URL, the server's pid, its RSS (the Node process only: the embedded PostgreSQL
 * processes are separate) and CPU times, and stop(). Not a benchmark itself.
 */
import { freePort } from '../test/pg.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const REPO = path.resolve(import.meta.dirname, '..');
const NODE = path.join(REPO, 'node_modules', '.bin', 'node');
const READY_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 30_000;

export interface BenchServer {
  /** e.g. http://127.0.0.1:40123 (no trailing slash). */
  base: string;
  /** The server's pid; undefined when attached with --url. */
  pid: number | undefined;
  /** The server process's resident set in MB (VmRSS), or null when unknown. */
  rssMB(): number | null;
  /** CPU seconds (user + system) used so far by the server process and by its descendants (PostgreSQL). */
  cpu(): { server: number; children: number } | null;
  stop(): Promise<void>;
}

export function readRssMB(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

const TICK = 100; // USER_HZ on Linux
/** [ppid, cpu seconds] of a process from /proc/<pid>/stat, or null when it is gone. */
function stat(pid: number): [number, number] | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    return [Number(f[1]), (Number(f[11]) + Number(f[12])) / TICK];
  } catch {
    return null;
  }
}

/** CPU seconds of each descendant of `root` (PostgreSQL's postmaster and its backends), at most 10 levels down, from /proc. */
export function descendantsCpu(root: number): Map<number, number> {
  const procs = new Map<number, [number, number]>(); // pid -> [ppid, cpu seconds]
  for (const name of fs.readdirSync('/proc')) {
    const s = /^\d+$/.test(name) ? stat(Number(name)) : null;
    if (s) procs.set(Number(name), s);
  }
  const out = new Map<number, number>();
  for (const [pid, [ppid, secs]] of procs)
    for (let up = ppid, depth = 0; up > 1 && depth < 10; up = procs.get(up)?.[0] ?? 0, depth++)
      if (up === root) {
        out.set(pid, secs);
        break;
      }
  return out;
}

export function cpuTimes(pid: number): { server: number; children: number } | null {
  const own = stat(pid);
  if (!own) return null;
  let children = 0;
  for (const secs of descendantsCpu(pid).values()) children += secs;
  return { server: own[1], children };
}

/**
 * CPU seconds used by the descendants of `root` from now until stop(). PostgreSQL's backends come
 * and go (pools close idle connections): each is sampled every 200 ms and counted from its first
 * sample (0 when it began meanwhile) to its last, so one that exits keeps what it used; a sum over
 * the backends alive at both ends would lose it, and could even go down.
 */
export function descendantsMeter(root: number): { stop(): number } {
  const base = descendantsCpu(root);
  const last = new Map(base);
  const sample = () => {
    for (const [pid, secs] of descendantsCpu(root)) last.set(pid, secs);
  };
  const timer = setInterval(sample, 200);
  return {
    stop() {
      sample();
      clearInterval(timer);
      let used = 0;
      for (const [pid, secs] of last) used += Math.max(0, secs - (base.get(pid) ?? 0));
      return used;
    },
  };
}

/** CPU seconds the whole machine has been busy (all processes, all cores), from /proc/stat. */
export function machineBusySeconds(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / TICK; // user nice system irq softirq steal
}

export interface CoresBusy {
  server: number | null;
  postgres: number | null;
  bench: number;
  other: number | null;
}

/**
 * Measures, from now until stop(), the cores kept busy on average by the server, its PostgreSQL,
 * this bench process and everything else on the machine ("other" well above 0 means the figures
 * are disturbed by other work). null where unknown (a server attached with --url).
 */
export function cpuMeter(server: BenchServer): { stop(): CoresBusy } {
  const t0 = performance.now();
  const [s0, b0, m0] = [server.cpu(), process.cpuUsage(), machineBusySeconds()];
  const children = server.pid === undefined ? null : descendantsMeter(server.pid);
  return {
    stop() {
      const secs = (performance.now() - t0) / 1000;
      const [s1, b, m1] = [server.cpu(), process.cpuUsage(b0), machineBusySeconds()];
      const bench = (b.user + b.system) / 1e6;
      const srv = s0 && s1 ? s1.server - s0.server : null;
      const pg = children ? children.stop() : null;
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

export function describeCores(c: CoresBusy): string {
  const n = (x: number | null) => x ?? 'n/a';
  const warn = c.other !== null && c.other > 0.2 ? `  WARNING: other processes kept ${c.other} cores busy; the figures are disturbed` : '';
  return `cores busy: server ${n(c.server)}, PostgreSQL ${n(c.postgres)}, bench ${c.bench}, other processes ${n(c.other)} (of ${os.availableParallelism()})${warn}`;
}

/** Samples a value every `ms` milliseconds, keeping the largest; stop() answers it. */
export function peakSampler(sample: () => number | null, ms = 100): { stop(): number | null } {
  let peak: number | null = sample();
  const t = setInterval(() => {
    const v = sample();
    if (v !== null && (peak === null || v > peak)) peak = v;
  }, ms);
  return { stop: () => (clearInterval(t), peak) };
}

/** Resolves when the child process exits. */
function exitOf(child: ChildProcess): Promise<void> {
  return new Promise<void>((r) => child.once('exit', () => r()));
}

/** SIGTERM (graceful shutdown), then SIGKILL after `timeoutMs`; resolves once the process is gone. */
async function terminate(child: ChildProcess, exited: Promise<void>, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(t);
}

/**
 * A server killed hard leaves its PostgreSQL running: end that one by its own pid file in
 * `dataDir/pg`, and wait (up to 30 s) until it is gone.
 */
async function stopLeftPostgres(dataDir: string): Promise<void> {
  const pidFile = path.join(dataDir, 'pg', 'postmaster.pid');
  try {
    const pgPid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
    if (pgPid > 0) {
      process.kill(pgPid, 'SIGINT');
      for (let i = 0; i < 300 && fs.existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 100));
    }
  } catch {
    // no pid file (PostgreSQL stopped cleanly) or no such process
  }
}

/** Waits for `${base}/readyz` to answer 200 (failing early when `child` exits). */
export async function waitReady(base: string, child?: ChildProcess, timeoutMs = READY_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`the server exited with code ${child.exitCode} before it was ready`);
    try {
      const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${base}/readyz did not answer 200 within ${timeoutMs / 1000} s`);
}

/** `--url http://host:port` attaches to that server; otherwise one is started (and stop() ends it). */
export async function startServer(url?: string): Promise<BenchServer> {
  if (url) {
    const base = url.replace(/\/+$/, '');
    await waitReady(base);
    return { base, pid: undefined, rssMB: () => null, cpu: () => null, stop: async () => {} };
  }
  const server = await spawnServer(fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-bench-')), { remove: true });
  const onSignal = () => void server.stop().finally(() => process.exit(130));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  return server;
}

export interface SpawnedServer extends BenchServer {
  dataDir: string;
  /** Its HTTP port and its embedded PostgreSQL's (for a `tributary worker` beside it). */
  port: number;
  pgPort: number;
  /** Every line the server wrote to stdout since it started (only kept when asked). */
  lines: string[];
}

export interface SpawnOptions {
  /** Delete the data folder when stopped. */
  remove: boolean;
  logLevel?: string;
  /** Keep the server's stdout lines (LOG_LEVEL debug shows PostgreSQL's own log). */
  keepLines?: boolean;
  readyTimeoutMs?: number;
  stopTimeoutMs?: number;
}

/**
 * Starts `node src/server.ts` as `npm start` does (plus `BENCH_SERVER_NODE_ARGS`), with its embedded
 * PostgreSQL in `dataDir`, on free loopback ports; answers once /readyz does.
 */
export async function spawnServer(dataDir: string, opts: SpawnOptions): Promise<SpawnedServer> {
  fs.mkdirSync(dataDir, { recursive: true });
  // As root, PostgreSQL runs as the postgres user and must reach <dataDir>/pg.
  fs.chmodSync(dataDir, 0o755);
  if (os.userInfo().uid === 0) fs.chmodSync(path.dirname(dataDir), fs.statSync(path.dirname(dataDir)).mode | 0o055);
  const [port, pgPort] = [await freePort(), await freePort()];
  const base = `http://127.0.0.1:${port}`;
  const tail: string[] = []; // the last lines the server wrote, shown when it fails
  const lines: string[] = [];
  // npm start's flag first, then BENCH_SERVER_NODE_ARGS: a flag given there wins (Node takes the last).
  const child = spawn(NODE, ['--max-semi-space-size=16', ...(process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean), 'src/server.ts'], {
    cwd: REPO,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      TRIBUTARY_DATA_DIR: dataDir,
      EMBEDDED_PG_PORT: String(pgPort),
      LOG_LEVEL: opts.logLevel ?? 'warn',
      FHIR_AUTH: process.env.FHIR_AUTH ?? 'off',
      DIRECTORY_AUTOLOAD: process.env.DIRECTORY_AUTOLOAD ?? 'false',
      SANDBOXES: process.env.SANDBOXES ?? 'false',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const s of [child.stdout!, child.stderr!]) {
    let partial = '';
    s.setEncoding('utf8').on('data', (d: string) => {
      const parts = (partial + d).split('\n');
      partial = parts.pop()!;
      if (opts.keepLines && s === child.stdout) lines.push(...parts);
      tail.push(...parts.filter(Boolean));
      tail.splice(0, Math.max(0, tail.length - 40));
    });
  }
  const exited = exitOf(child);
  const pid = child.pid!;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await terminate(child, exited, opts.stopTimeoutMs ?? STOP_TIMEOUT_MS);
    await stopLeftPostgres(dataDir);
    if (opts.remove) fs.rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await waitReady(base, child, opts.readyTimeoutMs ?? READY_TIMEOUT_MS);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n--- server output ---\n${tail.join('\n')}`);
  }
  return { base, pid, dataDir, port, pgPort, lines, rssMB: () => readRssMB(pid), cpu: () => cpuTimes(pid), stop };
}

/** The value at quantile q (0..1) of ascending numbers. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export const round = (n: number | null, d = 1): number | null => (n === null || !Number.isFinite(n) ? null : Math.round(n * 10 ** d) / 10 ** d);

/** GET /admin/sync?since=: the runs started since an instant, summed up. */
export interface RunsSummary {
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
  skipped?: number;
}

/** GET /admin/sync?since= at `base`, with the admin key. */
export async function runsSince(base: string, adminKey: string, since: string): Promise<RunsSummary> {
  const res = await fetch(`${base}/admin/sync?since=${encodeURIComponent(since)}`, { headers: { authorization: `Bearer ${adminKey}` } });
  return res.json() as Promise<RunsSummary>;
}

/**
 * Polls until `n` runs started since `since` have finished (with `idle`, skipped ones counted and
 * none still running), showing progress on a terminal; their summary.
 */
export async function runsFinished(base: string, adminKey: string, since: string, n: number, timeoutS: number, idle = false): Promise<RunsSummary> {
  const deadline = Date.now() + timeoutS * 1000;
  let last: RunsSummary | undefined;
  let shown = 0;
  while (Date.now() < deadline) {
    last = await runsSince(base, adminKey, since);
    const done = last.succeeded + last.failed + last.needs_reauth + (idle ? (last.skipped ?? 0) : 0);
    if (done >= n && (!idle || last.running === 0)) return last;
    if (process.stderr.isTTY && done - shown >= n / 20) {
      process.stderr.write(`  ${done}/${n} runs finished\r`);
      shown = done;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`only ${JSON.stringify(last)} of ${n} runs finished in ${timeoutS} s`);
}

/** The Node flags `npx tributary` runs with: those of bin/tributary.ts's first line (`#!/usr/bin/env -S node ...`). */
export function tributaryNodeArgs(): string[] {
  const first = fs.readFileSync(path.join(REPO, 'bin', 'tributary.ts'), 'utf8').split('\n')[0];
  return first
    .replace(/^#!\S*env\s+(-S\s+)?node\s*/, '')
    .split(/\s+/)
    .filter(Boolean);
}

export interface SpawnedWorker {
  child: ChildProcess;
  pid: number;
  rssMB(): number | null;
  stop(): Promise<void>;
}

/**
 * Starts `tributary worker` beside a spawned server (its data folder and embedded PostgreSQL), as
 * `npx tributary worker` runs it (its Node flags, or `nodeArgs`), with LOG_LEVEL info; answers once
 * it logs that it is running.
 */
export async function spawnWorker(server: SpawnedServer, env: Record<string, string> = {}, nodeArgs = tributaryNodeArgs()): Promise<SpawnedWorker> {
  const child = spawn(NODE, [...nodeArgs, path.join(REPO, 'bin', 'tributary.ts'), 'worker'], {
    cwd: REPO,
    env: {
      ...process.env,
      PORT: String(server.port),
      TRIBUTARY_DATA_DIR: server.dataDir,
      EMBEDDED_PG_PORT: String(server.pgPort),
      SANDBOXES: 'false',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = exitOf(child);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      if (out.length < 100_000) out += d;
      if (out.includes('worker running')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the worker exited (${code}) before it was running`)));
  });
  child.stdout!.resume();
  const pid = child.pid!;
  return { child, pid, rssMB: () => readRssMB(pid), stop: () => terminate(child, exited, STOP_TIMEOUT_MS) };
}
