/**
 * Concurrent writers of one resource: version-aware updates (If-Match) let exactly one writer of a
 * version win, read-modify-write clients that retry on 412 lose no change, and concurrent
 * update-as-create makes the resource once.
 * See: https://hl7.org/fhir/R4/http.html#concurrency
 */
import t from 'tap';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildTestApp, injectWithin } from '../helper.ts';

const app = await buildTestApp(t);
const BASE = '/fhir/r4';
const JSON_CT = { 'content-type': 'application/fhir+json' };
const REQUEST_TIMEOUT_MS = 30_000;

/** One request, failing (instead of hanging the suite) when it takes longer than REQUEST_TIMEOUT_MS. */
const send = (a: FastifyInstance, opts: InjectOptions): Promise<LightMyRequestResponse> => injectWithin(a, opts, REQUEST_TIMEOUT_MS);

type Json = Record<string, unknown>;
const withoutMeta = ({ meta: _meta, ...rest }: Json): Json => rest;
const countBy = (statuses: number[]) => statuses.reduce<Record<number, number>>((acc, s) => ({ ...acc, [s]: (acc[s] ?? 0) + 1 }), {});

async function versionsInDb(type: string, id: string): Promise<number> {
  const { rows } = await app.pg.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM hfj_res_ver v JOIN hfj_resource r ON r.res_id = v.res_id WHERE r.res_type = $1 AND r.fhir_id = $2',
    [type, id],
  );
  return rows[0].n;
}

const created = await send(app, {
  method: 'POST',
  url: `${BASE}/Patient`,
  headers: JSON_CT,
  payload: { resourceType: 'Patient', name: [{ family: 'Contended', given: ['Casey'] }], birthDate: '1970-01-01' },
});
if (created.statusCode !== 201) throw new Error(`setup: create answered ${created.statusCode}: ${created.body}`);
const patient = withoutMeta(created.json());
const PID = patient.id as string;

t.test('50 concurrent PUTs with If-Match: W/"1": exactly one wins', async (t) => {
  const N = 50;
  const bodies = Array.from({ length: N }, (_, i) => ({
    ...patient,
    name: [{ family: `Racer${i}`, given: ['Casey'] }],
    birthDate: new Date(Date.UTC(1950, 0, 1 + i)).toISOString().slice(0, 10),
  }));
  const results = await Promise.all(
    bodies.map((payload) => send(app, { method: 'PUT', url: `${BASE}/Patient/${PID}`, headers: { ...JSON_CT, 'if-match': 'W/"1"' }, payload })),
  );
  const statuses = results.map((r) => r.statusCode);
  t.comment(`statuses: ${JSON.stringify(countBy(statuses))}`);
  t.notOk(
    statuses.some((s) => s >= 500),
    'no 5xx',
  );
  const winners = statuses.flatMap((s, i) => (s === 200 ? [i] : []));
  t.equal(winners.length, 1, 'exactly one 200');
  t.equal(statuses.filter((s) => s === 412 || s === 409).length, N - 1, 'every other writer gets 412 (or 409)');
  for (const r of results.filter((r) => r.statusCode !== 200)) {
    t.equal(r.json().resourceType, 'OperationOutcome', 'a loser gets an OperationOutcome');
  }
  const winner = winners[0];
  t.equal(results[winner].json().meta.versionId, '2', 'the winner made version 2');
  t.equal(results[winner].headers.etag, 'W/"2"');

  const hist = await send(app, { url: `${BASE}/Patient/${PID}/_history` });
  t.equal(hist.json().total, 2, 'history has exactly 2 versions');
  t.equal(await versionsInDb('Patient', PID), 2, 'hfj_res_ver has exactly 2 rows');
  const read = await send(app, { url: `${BASE}/Patient/${PID}` });
  t.equal(read.json().meta.versionId, '2');
  t.same(withoutMeta(read.json()), bodies[winner], "the current content is the winner's body");
});

t.test('50 concurrent read-modify-write clients that retry on 412 lose no change', async (t) => {
  const N = 50;
  const MAX_ATTEMPTS = 500;
  const start = Number((await send(app, { url: `${BASE}/Patient/${PID}` })).json().meta.versionId);
  const unexpected: string[] = [];
  let attempts = 0;

  async function client(i: number): Promise<boolean> {
    const identifier = { system: 'urn:test:client', value: `client-${i}` };
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      attempts++;
      const read = await send(app, { url: `${BASE}/Patient/${PID}` });
      if (read.statusCode !== 200) {
        unexpected.push(`client ${i} read: ${read.statusCode} ${read.body.slice(0, 200)}`);
        return false;
      }
      const current = read.json();
      const version = current.meta.versionId as string;
      const next = { ...withoutMeta(current), identifier: [...(current.identifier ?? []), identifier] };
      const res = await send(app, {
        method: 'PUT',
        url: `${BASE}/Patient/${PID}`,
        headers: { ...JSON_CT, 'if-match': `W/"${version}"` },
        payload: next,
      });
      if (res.statusCode === 200) return true;
      if (res.statusCode !== 412 && res.statusCode !== 409) {
        unexpected.push(`client ${i} update: ${res.statusCode} ${res.body.slice(0, 200)}`);
        return false;
      }
      // A little jitter so that the losers of one round do not all collide again in the next.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 5));
    }
    unexpected.push(`client ${i} gave up after ${MAX_ATTEMPTS} attempts`);
    return false;
  }

  const done = await Promise.all(Array.from({ length: N }, (_, i) => client(i)));
  t.comment(`${attempts} read-modify-write attempts for ${N} changes`);
  t.same(unexpected, [], 'only 200 and 412/409 answers, and every client got through');
  t.equal(done.filter(Boolean).length, N, 'every client applied its change');

  const read = await send(app, { url: `${BASE}/Patient/${PID}` });
  const values = (read.json().identifier ?? []).map((x: { value: string }) => x.value).sort();
  t.same(values, Array.from({ length: N }, (_, i) => `client-${i}`).sort(), 'all 50 identifiers are there, each once');
  t.equal(Number(read.json().meta.versionId), start + N, 'exactly 50 more versions');
  const hist = await send(app, { url: `${BASE}/Patient/${PID}/_history?_count=1` });
  t.equal(hist.json().total, start + N, 'history has them all');
  t.equal(await versionsInDb('Patient', PID), start + N);
});

t.test('20 concurrent PUTs of a new id (update-as-create) create it once', async (t) => {
  const N = 20;
  const id = 'brand-new-patient';
  const results = await Promise.all(
    Array.from({ length: N }, (_, i) =>
      send(app, {
        method: 'PUT',
        url: `${BASE}/Patient/${id}`,
        headers: JSON_CT,
        payload: { resourceType: 'Patient', id, name: [{ family: `Creator${i}` }] },
      }),
    ),
  );
  const statuses = results.map((r) => r.statusCode);
  t.comment(`statuses: ${JSON.stringify(countBy(statuses))}`);
  t.notOk(
    statuses.some((s) => s >= 500),
    `no 5xx: ${results
      .filter((r) => r.statusCode >= 500)
      .map((r) => r.body)
      .join(' | ')}`,
  );
  t.equal(statuses.filter((s) => s === 201).length, 1, 'exactly one 201');
  t.ok(
    statuses.every((s) => [200, 201, 409, 412].includes(s)),
    'the rest update (200) or conflict (409/412)',
  );
  for (const r of results.filter((r) => r.statusCode >= 400)) {
    t.equal(r.json().resourceType, 'OperationOutcome', 'a conflict is an OperationOutcome');
  }

  const { rows } = await app.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM hfj_resource WHERE res_type = $1 AND fhir_id = $2', [
    'Patient',
    id,
  ]);
  t.equal(rows[0].n, 1, 'the resource exists once');
  const updates = statuses.filter((s) => s === 200).length;
  t.equal(await versionsInDb('Patient', id), 1 + updates, 'one version for the create and one per 200');
  const read = await send(app, { url: `${BASE}/Patient/${id}` });
  t.equal(read.statusCode, 200);
  t.equal(read.json().meta.versionId, String(1 + updates));
});
