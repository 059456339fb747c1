/**
 * The big patient (src/sandbox/big.ts): a valid, referentially closed record of exactly the size
 * asked, mostly Observations across categories; made once per size on a real database (two makers
 * at once make one), fast, and able to sign in.
 */
import path from 'node:path';
import t from 'tap';
import type { Observation } from '@medplum/fhirtypes';
import { createValidator } from '../../../src/fhir/validation/index.ts';
import { bigRecord, makeBigPatient, parseBigPatient } from '../../../src/sandbox/big.ts';
import { buildTestApp } from '../../helper.ts';

t.test('the record: valid, references resolve, the size asked, categories mixed', async (t) => {
  const validator = await createValidator({ profilesDir: path.join(import.meta.dirname, '../../../profiles') });
  const record = [...bigRecord({ resources: 600, idPrefix: 'ep' })];
  t.equal(record.length, 600);
  const ids = new Set(record.map((r) => `${r.resourceType}/${r.id}`));
  t.equal(ids.size, 600, 'ids unique');
  const refs = JSON.stringify(record)
    .match(/"reference":"[^"]+"/g)!
    .map((m) => m.slice(13, -1));
  t.same(
    refs.filter((r) => !ids.has(r)),
    [],
    'every reference resolves inside the record',
  );
  const failures = record.flatMap((r) =>
    validator
      .validate(r)
      .filter((i) => i.severity === 'error' || i.severity === 'fatal')
      .map((i) => `${r.id}: ${i.diagnostics}`),
  );
  t.same(failures.slice(0, 5), []);
  const obs = record.filter((r): r is Observation => r.resourceType === 'Observation');
  t.ok(obs.length / record.length > 0.6, `${obs.length} of 600 are Observations`);
  t.same([...new Set(obs.map((o) => o.category![0].coding![0].code))].sort(), ['activity', 'laboratory', 'social-history', 'survey', 'vital-signs']);
  for (const n of [3, 4, 26, 27, 1000, 50_000]) {
    let count = 0;
    for (const _ of bigRecord({ resources: n, idPrefix: 'x' })) count++;
    t.equal(count, n, `exactly ${n}`);
  }
  t.equal(
    JSON.stringify([...bigRecord({ resources: 50, idPrefix: 'x' })]),
    JSON.stringify([...bigRecord({ resources: 50, idPrefix: 'x' })]),
    'deterministic',
  );
  t.equal(parseBigPatient({ resources: 50_000 }), 50_000);
  t.match(parseBigPatient({ resources: 100_001 }), /from 1 to 100000/);
  t.match(parseBigPatient({}), /The body is/);
});

t.test('made once on the database, a few thousand resources a second, and signs in', async (t) => {
  const app = await buildTestApp(t);
  const { app: sandbox } = await app.auth.createApp({ name: 'Big sandbox' });
  const deps = { pool: app.pg, bulk: app.fhir, auth: app.auth };
  const started = Date.now();
  // Two makers at once: one makes it, the other waits and answers the same patient. The rate's floor
  // is low for a suite running three files at once; alone on 2 cores it writes about 3,600 a second.
  const [a, b] = await Promise.all([
    makeBigPatient(deps, sandbox.id, { resources: 10_000, idPrefix: 'ep' }),
    makeBigPatient(deps, sandbox.id, { resources: 10_000, idPrefix: 'ep' }),
  ]);
  const ms = Date.now() - started;
  const rate = Math.round(10_000 / (ms / 1000));
  t.same(a, { username: 'bigpatient10000', password: 'bigpatient100002026', patientId: 'ep-big10000-pat', resources: 10_000 });
  t.same(b, a);
  t.ok(rate > 500, `${rate} resources/s (${ms} ms for 10,000)`);
  const again = Date.now();
  t.same(await makeBigPatient(deps, sandbox.id, { resources: 10_000, idPrefix: 'ep' }), a);
  t.ok(Date.now() - again < 1000, 'a second call answers at once');
  const user = await app.auth.checkPassword(sandbox.id, a.username, a.password);
  t.ok(user, 'the patient signs in');
  t.equal(await app.auth.patientOf(sandbox.id, user!.id), a.patientId, 'the SMART patient context is its Patient');
  const stored = await app.fhir.repo.readCurrent(app.pg, { partitionId: sandbox.id, ownerId: user!.id }, 'Patient', a.patientId);
  t.ok(stored, 'its Patient is stored, owned by the patient');
  const types = await app.pg.query<{ res_type: string; n: string }>(
    'SELECT res_type, count(*) AS n FROM hfj_resource WHERE partition_id = $1 GROUP BY res_type ORDER BY 2 DESC',
    [sandbox.id],
  );
  t.equal(types.rows[0].res_type, 'Observation');
  t.comment(types.rows.map((r) => `${r.res_type} ${r.n}`).join(', '));
  const small = await makeBigPatient(deps, sandbox.id, { resources: 40, idPrefix: 'ep' });
  t.equal(small.resources, 40, 'another size, another patient');
  t.not(small.patientId, a.patientId);
});
