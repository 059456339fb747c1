/**
 * A store made by a Tributary on pg-boss 10 starts on pg-boss 12: the old schema (which no pg-boss
 * release migrates) is set aside, the jobs still waiting are queued again with their ids and data,
 * and the old schema is gone. The old schema here is made by pg-boss 10 itself.
 */
import t from 'tap';
import pg from 'pg';
import PgBoss10 from 'pg-boss-10';
import { buildApp } from '../../src/app.ts';
import { testConfig, testDatabase } from '../helper.ts';

t.test('pg-boss 10 schema: waiting jobs carried over, finished ones not, old schema dropped', async (t) => {
  const url = await testDatabase(t);
  const old = new PgBoss10({ connectionString: url, schema: 'pgboss', supervise: false, schedule: false });
  await old.start();
  await old.createQueue('webhook');
  await old.createQueue('reindex');
  await old.createQueue('not-ours');
  const event = { appId: 7, id: 'msg_carried', event: { type: 'sync.succeeded', timestamp: '2026-12-01T00:00:00.000Z', data: { connection: 1 } } };
  const waiting = await old.send('webhook', event, { retryLimit: 8, retryDelay: 1, retryBackoff: true, expireInSeconds: 60, startAfter: 3600 });
  const finished = await old.send('webhook', { ...event, id: 'msg_done' });
  const [done] = await old.fetch('webhook', { batchSize: 1, priority: false });
  await old.complete('webhook', done.id);
  await old.send('not-ours', { x: 1 });
  t.not(done.id, waiting, 'the fetched job is the one due now');
  t.equal(done.id, finished);
  await old.stop({ graceful: false, wait: true });

  const pool = new pg.Pool({ connectionString: url, max: 2 });
  t.teardown(() => pool.end());
  t.equal((await pool.query('SELECT version FROM pgboss.version')).rows[0].version, 24, 'the store has pg-boss 10’s schema');

  const app = await buildApp(testConfig(url), { logger: false });
  t.teardown(() => app.close());
  await app.ready();
  const { rows: version } = await pool.query('SELECT version FROM pgboss.version');
  t.ok(version[0].version > 24, `pg-boss's current schema (${version[0].version})`);
  const { rows: schemas } = await pool.query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgboss%' ORDER BY 1");
  t.same(
    schemas.map((r) => r.nspname),
    ['pgboss'],
    'the old schema is dropped',
  );
  const carried = await app.jobs.getJobById<typeof event>('webhook', waiting!);
  t.ok(carried, 'the waiting event keeps its id');
  t.same(carried?.data, event, 'and its data');
  t.equal(carried?.retryLimit, 8, 'and its retries');
  t.ok(carried && carried.startAfter.getTime() > Date.now() + 3000_000, 'and when it is due');
  t.equal(await app.jobs.getJobById('webhook', finished!), null, 'a finished job is history, not carried');
  const { rows: all } = await pool.query('SELECT name, count(*)::int AS n FROM pgboss.job GROUP BY name ORDER BY name');
  t.same(
    all.filter((r) => r.name === 'webhook'),
    [{ name: 'webhook', n: 1 }],
    'one webhook job in all',
  );
  t.notOk(
    all.some((r) => r.name === 'not-ours'),
    'a queue Tributary does not declare is not carried',
  );

  // A second start (another process, or a restart) finds nothing to upgrade.
  const again = await buildApp(testConfig(url), { logger: false });
  await again.ready();
  await again.close();
  t.equal((await pool.query("SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'webhook'")).rows[0].n, 1, 'nothing carried twice');
});
