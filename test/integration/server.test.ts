import t from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { buildApp } from '../../src/app.ts';
import { migrate, listMigrations } from '../../src/storage/migrate.ts';
import { freePort } from '../pg.ts';
import { testConfig, testDatabase } from '../helper.ts';

const root = path.resolve(import.meta.dirname, '../..');

t.test('migrations: several processes starting at once apply each migration once', async (t) => {
  const url = await testDatabase(t);
  const pools = [1, 2, 3].map(() => new pg.Pool({ connectionString: url, max: 2 }));
  // The database may be dropped (WITH FORCE) before the pools end: their idle connections are then
  // terminated, which a pool reports as an 'error' event (thrown when nothing listens).
  for (const p of pools) p.on('error', () => {});
  t.teardown(() => Promise.all(pools.map((p) => p.end())));
  const applied = await Promise.all(pools.map((p) => migrate(p)));
  const all = applied.flat();
  t.same(
    all.sort(),
    listMigrations()
      .map((m) => m.version)
      .sort(),
    'every migration applied exactly once in all',
  );
  const again = await migrate(pools[0]);
  t.same(again, [], 'a later start applies nothing');
  const { rows } = await pools[0].query("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_name LIKE 'hfj_%'");
  t.ok(rows[0].n >= 15, `HAPI tables exist (${rows[0].n})`);
});

t.test('one JSON log line per request, without headers or tokens', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  const app = await buildApp(testConfig(await testDatabase(t)), { logger: { level: 'info', stream } });
  t.teardown(() => app.close());
  await app.ready();
  lines.length = 0;
  // An unknown token: refused (401), and never written to the log.
  const secret = 'Bearer s3cr3t-token-value';
  const res = await app.inject({ url: '/fhir/r4/Patient/nope', headers: { authorization: secret, 'x-request-id': 'req-123' } });
  t.equal(res.statusCode, 401);
  t.equal(res.headers['x-request-id'], 'req-123');
  const requests = lines.filter((l) => l.msg === 'request');
  t.equal(requests.length, 1, 'exactly one line for the request');
  t.match(requests[0], { method: 'GET', route: '/fhir/r4/:type/:id', status: 401, ms: Number, reqId: 'req-123' });
  t.notOk(JSON.stringify(lines).includes('s3cr3t'), 'no token in any log line');
});

t.test('npm start: serves, answers readyz, and exits cleanly on SIGTERM', async (t) => {
  const url = await testDatabase(t);
  const port = await freePort();
  const child = spawn(path.join(root, 'node_modules/.bin/node'), ['src/server.ts'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: url, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => child.kill('SIGKILL'));
  let ready = false;
  for (let i = 0; i < 120 && !ready; i++) {
    ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (!ready) await new Promise((r) => setTimeout(r, 250));
  }
  t.ok(ready, 'readyz answers 200');
  const meta = await fetch(`http://127.0.0.1:${port}/fhir/r4/metadata`);
  t.equal(meta.status, 200);
  t.equal((await meta.json()).resourceType, 'CapabilityStatement');
  child.kill('SIGTERM');
  t.equal(await exited, 0, `exit code 0 after SIGTERM ${stderr.slice(0, 1000)}`);
});
