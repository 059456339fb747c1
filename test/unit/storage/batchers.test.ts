import t from 'tap';
import { buildTestApp } from '../../helper.ts';

// Concurrent creates share statements, yet each stays on its own: a bad one fails alone.
const app = await buildTestApp(t);

t.test('concurrent creates are all stored, each once, and a failing one fails alone', async (t) => {
  const bodies = Array.from({ length: 60 }, (_, i) => ({ resourceType: 'Patient', name: [{ family: `Batch${i}` }] }));
  // A meta.source longer than its column passes validation but PostgreSQL refuses it: that
  // create must fail alone, though it shares a statement with others.
  const bad = { resourceType: 'Patient', meta: { source: `http://example.org/${'a'.repeat(2500)}` } };
  const all = [...bodies.slice(0, 30), bad, ...bodies.slice(30)];
  const res = await Promise.all(
    all.map((b) => app.inject({ method: 'POST', url: '/fhir/r4/Patient', headers: { 'content-type': 'application/fhir+json' }, payload: b })),
  );
  const statuses = res.map((r) => r.statusCode);
  t.equal(statuses.filter((s) => s === 201).length, 60, 'the 60 good creates succeed');
  t.equal(statuses[30], 400, 'the bad one gets a 400');
  t.match(res[30].json().issue[0].diagnostics, /longer than the server stores/, 'refused by PostgreSQL, inside a shared statement');
  const ids = new Set(res.filter((r) => r.statusCode === 201).map((r) => r.json().id));
  t.equal(ids.size, 60, 'distinct ids');
  const { rows } = await app.pg.query("SELECT count(*)::int AS n FROM hfj_resource WHERE res_type = 'Patient'");
  t.equal(rows[0].n, 60, 'exactly the good ones are stored');
  const read = await app.inject({ url: `/fhir/r4/Patient/${[...ids][17]}` });
  t.equal(read.statusCode, 200);
});

t.test('concurrent reads share queries, and each gets its own resource', async (t) => {
  const made = await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      app.inject({
        method: 'POST',
        url: '/fhir/r4/Observation',
        headers: { 'content-type': 'application/fhir+json' },
        payload: { resourceType: 'Observation', status: 'final', code: { text: `obs-${i}` } },
      }),
    ),
  );
  const ids = made.map((r) => r.json().id as string);
  await app.inject({ method: 'DELETE', url: `/fhir/r4/Observation/${ids[5]}` });
  const urls = [...ids.map((id) => `/fhir/r4/Observation/${id}`), '/fhir/r4/Observation/no-such-id', `/fhir/r4/Patient/${ids[0]}`];
  const res = await Promise.all([...urls, ...urls].map((url) => app.inject({ url })));
  res.forEach((r, k) => {
    const i = k % urls.length;
    if (i < 40 && i !== 5) t.equal(r.json().code?.text, `obs-${i}`, `read ${i} answers its own resource`);
  });
  t.equal(res[5].statusCode, 410, 'a deleted one answers 410');
  t.equal(res[40].statusCode, 404, 'an unknown id answers 404');
  t.equal(res[41].statusCode, 404, 'the same id under another type answers 404');
});
