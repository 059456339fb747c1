/**
 * Statement and idle-in-transaction timeouts on the server's pools (DB_STATEMENT_TIMEOUT_MS,
 * DB_IDLE_IN_TRANSACTION_TIMEOUT_MS): a search slower than the limit is cancelled by PostgreSQL and
 * answered 504 with an OperationOutcome (code `timeout`), over real HTTP, and the pool serves the
 * next requests; a transaction left idle is ended by the server; non-FHIR APIs answer a timeout in
 * their own error shape. The slow search is slow by its data: `name:contains` cannot use an index
 * and scans every Patient name row (2,000,000 of them, written here with generate_series: a scan, in parallel, takes about 0.35 s on an idle 2-core machine; 600,000 were once enough, but PostgreSQL 15 scanned them in 170 ms).
 */
import Fastify from 'fastify';
import pg from 'pg';
import t from 'tap';
import { buildApp } from '../../src/app.ts';
import { errorHandler } from '../../plugins/errors.ts';
import { hapiHash } from '../../src/storage/hash.ts';
import { inTransaction } from '../../src/storage/transaction.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';

const STATEMENT_MS = 120;
const IDLE_MS = 400;
const url = await testDatabase(t);
const app = await buildApp(testConfig(url, { dbStatementTimeoutMs: STATEMENT_MS, dbIdleInTransactionTimeoutMs: IDLE_MS }), { logger: false });
await app.ready();
t.teardown(() => app.close());
const port = await freePort();
await app.listen({ port, host: '127.0.0.1' });
const fhir = `http://127.0.0.1:${port}/fhir/r4`;

// One Patient, and 2,000,000 long name index rows of it (in index order, so they are written
// quickly): enough that a scan takes well over the limit.
const created = await fetch(`${fhir}/Patient`, {
  method: 'POST',
  headers: { 'content-type': 'application/fhir+json' },
  body: JSON.stringify({ resourceType: 'Patient', id: 'p', name: [{ family: 'Quick' }] }),
});
const patient = (await created.json()) as { id: string };
const admin = new pg.Client({ connectionString: url });
await admin.connect();
t.teardown(() => admin.end());
const fixtureStart = Date.now();
const {
  rows: [{ res_id: resId, owner_id: ownerId }],
} = await admin.query<{ res_id: string; owner_id: string }>("SELECT res_id, owner_id FROM hfj_resource WHERE res_type = 'Patient' AND fhir_id = $1", [
  patient.id,
]);
await admin.query(
  `INSERT INTO hfj_spidx_string (partition_id, res_id, res_type, sp_name, hash_identity, sp_value_normalized, sp_value_exact, owner_id)
   SELECT 0, $1, 'Patient', 'name', $2, x.v, x.v, $3 FROM generate_series(1, 2000000) i CROSS JOIN LATERAL (SELECT lpad(i::text, 10, '0') || repeat('X', 180) AS v) x`,
  [resId, hapiHash(['Patient', 'name']).toString(), ownerId],
);
await admin.query('ANALYZE hfj_spidx_string');
t.comment(`fixture written in ${Date.now() - fixtureStart} ms`);
const SLOW = 'Patient?name:contains=nowhere-in-the-data';

t.test('the slow search takes longer than the limit without it (the fixture is slow)', async (t) => {
  const started = Date.now();
  await admin.query(`SELECT count(*) FROM hfj_spidx_string WHERE hash_identity = $1 AND sp_value_normalized LIKE '%NOWHERE%'`, [
    hapiHash(['Patient', 'name']).toString(),
  ]);
  const ms = Date.now() - started;
  t.comment(`a scan of the name rows without a limit: ${ms} ms`);
  t.ok(ms > STATEMENT_MS * 1.5, `${ms} ms is well over ${STATEMENT_MS} ms`);
});

t.test('a search past the statement timeout is a 504 OperationOutcome, and the pool serves the next', async (t) => {
  const started = Date.now();
  const res = await fetch(`${fhir}/${SLOW}`);
  const ms = Date.now() - started;
  t.equal(res.status, 504);
  const body = await res.json();
  t.equal(body.resourceType, 'OperationOutcome');
  t.equal(body.issue[0].code, 'timeout');
  t.match(body.issue[0].diagnostics, /statement timeout/);
  t.ok(ms < 5000, `answered in ${ms} ms, not held`);
  t.comment(`504 after ${ms} ms`);
  // More slow searches at once than the search pool... each ends at the limit; then a quick one.
  const many = await Promise.all(Array.from({ length: 4 }, () => fetch(`${fhir}/${SLOW}`).then((r) => r.status)));
  t.same(many, [504, 504, 504, 504]);
  const next = await fetch(`${fhir}/Patient?_id=${patient.id}`);
  t.equal(next.status, 200);
  t.equal((await next.json()).total, 1);
  // A cancelled backend may show as active for a moment after the 504 (on a loaded machine): looked at for up to 2 s.
  const running = async () =>
    (
      await admin.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'tributary%' AND state = 'active' AND query LIKE '%LIKE%'",
      )
    ).rows[0].n as number;
  let n = await running();
  for (let i = 0; n > 0 && i < 20; i++) {
    await new Promise((r) => setTimeout(r, 100));
    n = await running();
  }
  t.equal(n, 0, 'no search still runs on the server');
});

t.test('every pool connection carries the limits', async (t) => {
  for (const pool of [app.pg, app.pgSearch]) {
    const { rows } = await pool.query(
      "SELECT current_setting('statement_timeout') AS s, current_setting('idle_in_transaction_session_timeout') AS i",
    );
    t.same(rows[0], { s: `${STATEMENT_MS}ms`, i: `${IDLE_MS}ms` });
  }
});

t.test('a transaction left idle is ended by the server; the pool goes on', async (t) => {
  const err = await inTransaction(app.pg, async (c) => {
    await c.query('SELECT 1');
    await new Promise((r) => setTimeout(r, IDLE_MS * 3));
    return c.query('SELECT 2');
  }).then(
    () => undefined,
    (e: Error & { code?: string }) => e,
  );
  t.ok(err, 'the statement after the idle time fails');
  t.match(String(err?.message), /idle-in-transaction|terminat|Connection/i, String(err?.message));
  const { rows } = await app.pg.query('SELECT 1 AS one');
  t.equal(rows[0].one, 1);
  const left = await admin.query(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
  );
  t.equal(left.rows[0].n, 0);
});

t.test("outside FHIR a timeout keeps the API's error shape", async (t) => {
  const pool = new pg.Pool({ connectionString: url, max: 1, statement_timeout: STATEMENT_MS });
  t.teardown(() => pool.end());
  const api = Fastify();
  api.setErrorHandler(errorHandler);
  // The cancelled statement is PostgreSQL's own (57014); the routes stand for the APIs' paths.
  const slow = async () => pool.query(`SELECT count(*) FROM hfj_spidx_string WHERE sp_value_normalized LIKE '%NOWHERE%'`);
  api.get('/connect/connections', slow);
  api.post('/oauth2/token', slow);
  t.teardown(() => api.close());
  const connect = await api.inject({ method: 'GET', url: '/connect/connections' });
  t.equal(connect.statusCode, 504);
  t.same(connect.json(), { success: false, error: 'The database took too long to answer; retry, or narrow the request.', code: 'database_timeout' });
  const token = await api.inject({ method: 'POST', url: '/oauth2/token' });
  t.equal(token.statusCode, 504);
  t.equal(token.json().error, 'temporarily_unavailable');
});
