/**
 * Bulk Data export ($export) as a client meets it: kick-off at each level (system, Patient, Group,
 * a user's own token), the status URL (202 with X-Progress, then the manifest), the NDJSON files,
 * DELETE, expiry; its filters (_type, _typeFilter, _since, patient, a token's scopes); bad
 * kick-offs refused with an OperationOutcome; nothing of another app or user exported; and an
 * honest transactionTime while writers keep writing.
 */
import { gunzipSync } from 'node:zlib';
import t from 'tap';
import type { LightMyRequestResponse } from 'fastify';
import { buildTestApp, testConfig, testDatabase } from '../helper.ts';
import { buildApp } from '../../src/app.ts';
import { FHIR, FHIR_JSON, LOINC, type Json, send } from './search-support.ts';
import { expireExports } from '../../src/export/operation.ts';

const app = await buildTestApp(t, { fhirAuth: 'required' });
type Headers = Record<string, string>;
const ASYNC = { prefer: 'respond-async', accept: FHIR_JSON };

async function tenant(name: string) {
  const { app: created, clientSecret } = await app.auth.createApp({ name });
  return { app: created, headers: { client_id: created.clientId, client_secret: clientSecret, 'x-oneup-user-id': 'client' } as Headers };
}
async function person(tn: Awaited<ReturnType<typeof tenant>>, tag: string, scope?: string) {
  const user = (await app.auth.createUser(tn.app.id, tag))!;
  const tokens = await app.auth.exchangeCode(tn.app, await app.auth.newCode(tn.app.id, user.id, scope));
  return { userId: user.id, headers: { authorization: `Bearer ${tokens.access_token}` } as Headers };
}
async function tokenOf(tn: Awaited<ReturnType<typeof tenant>>, userId: string, scope: string): Promise<Headers> {
  const tokens = await app.auth.exchangeCode(tn.app, await app.auth.newCode(tn.app.id, userId, scope));
  return { authorization: `Bearer ${tokens.access_token}` };
}
const post = async (headers: Headers, resource: Json): Promise<Json> => {
  const res = await send(app, {
    method: 'POST',
    url: `${FHIR}/${resource.resourceType}`,
    headers: { ...headers, 'content-type': FHIR_JSON },
    payload: resource,
  });
  if (res.statusCode !== 201) throw new Error(`create ${resource.resourceType}: ${res.statusCode} ${res.body}`);
  return res.json();
};
/** A user's record: a Patient, two Observations (codes a and b), a Condition. Answers their typed ids. */
async function record(headers: Headers, tag: string): Promise<{ patient: string; ids: string[] }> {
  const p = await post(headers, { resourceType: 'Patient', name: [{ family: tag }] });
  const subject = { reference: `Patient/${p.id}` };
  const o1 = await post(headers, { resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '1111-1' }] }, subject });
  const o2 = await post(headers, { resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '2222-2' }] }, subject });
  const c = await post(headers, { resourceType: 'Condition', subject, code: { text: tag } });
  return { patient: p.id, ids: [`Patient/${p.id}`, `Observation/${o1.id}`, `Observation/${o2.id}`, `Condition/${c.id}`] };
}

const A = await tenant('export A');
const B = await tenant('export B');
const a1 = await person(A, 'a1');
const a2 = await person(A, 'a2');
const b1 = await person(B, 'b1');
const recA1 = await record(a1.headers, 'a1');
const recA2 = await record(a2.headers, 'a2');
const recB1 = await record(b1.headers, 'b1');
// The app's own resource, no user's: in a system-level export only.
const shared = await post(A.headers, { resourceType: 'Practitioner', name: [{ family: 'Shared' }] });

async function kickoff(path: string, headers: Headers, opts: { method?: 'GET' | 'POST'; payload?: Json; prefer?: string } = {}) {
  const h: Headers = { ...headers, ...ASYNC, ...(opts.prefer !== undefined ? { prefer: opts.prefer } : {}) };
  if (opts.payload) h['content-type'] = FHIR_JSON;
  return send(app, { method: opts.method ?? 'GET', url: `${FHIR}/${path}`, headers: h, payload: opts.payload });
}
/** Polls the status URL until the export is done; answers the final answer and the progress seen. */
async function poll(location: string, headers: Headers): Promise<{ res: LightMyRequestResponse; progress: string[] }> {
  const progress: string[] = [];
  const until = Date.now() + 60_000;
  for (;;) {
    const res = await send(app, { method: 'GET', url: new URL(location).pathname, headers });
    if (res.statusCode !== 202) return { res, progress };
    progress.push(String(res.headers['x-progress']));
    if (Date.now() > until) throw new Error('the export did not finish within 60 s');
    await new Promise((r) => setTimeout(r, 200));
  }
}
/** Runs an export to its manifest. */
async function exported(path: string, headers: Headers, opts: Parameters<typeof kickoff>[2] = {}) {
  const k = await kickoff(path, headers, opts);
  if (k.statusCode !== 202) throw new Error(`kick-off ${path}: ${k.statusCode} ${k.body}`);
  const location = String(k.headers['content-location']);
  const { res, progress } = await poll(location, headers);
  if (res.statusCode !== 200) throw new Error(`status ${res.statusCode} ${res.body}`);
  return { location, manifest: res.json() as Json, progress };
}
async function download(url: string, headers: Headers): Promise<Json[]> {
  const res = await send(app, { method: 'GET', url: new URL(url).pathname, headers });
  if (res.statusCode !== 200) throw new Error(`download ${url}: ${res.statusCode} ${res.body}`);
  return res.body
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}
async function allOutput(manifest: Json, headers: Headers): Promise<Json[]> {
  const out: Json[] = [];
  for (const o of manifest.output) {
    const rows = await download(o.url, headers);
    if (rows.length !== o.count || rows.some((r) => r.resourceType !== o.type)) throw new Error(`file ${o.url} does not hold ${o.count} ${o.type}`);
    out.push(...rows);
  }
  return out;
}
const typed = (rows: Json[]) => rows.map((r) => `${r.resourceType}/${r.id}`).sort();

t.test('a system-level export with the app credentials: every resource of the app, none of another app', async (t) => {
  const { location, manifest } = await exported('$export', A.headers);
  t.match(location, /\/fhir\/r4\/\$export-status\/[0-9a-f-]{36}$/);
  t.equal(manifest.requiresAccessToken, true);
  t.match(manifest.request, /\/fhir\/r4\/\$export$/);
  t.ok(Date.parse(manifest.transactionTime) > 0, 'transactionTime is an instant');
  t.same(manifest.error, []);
  const rows = await allOutput(manifest, A.headers);
  t.same(typed(rows), [...recA1.ids, ...recA2.ids, `Practitioner/${shared.id}`].sort(), "both users' records and the app's own");
  t.ok(
    rows.every((r) => r.meta?.versionId && r.meta?.lastUpdated),
    'each resource as a read gives it (meta)',
  );
  // The files answer the credentials that started the export only.
  const url = new URL(manifest.output[0].url).pathname;
  t.equal((await send(app, { method: 'GET', url, headers: B.headers })).statusCode, 404, "another app's credentials: 404");
  t.equal((await send(app, { method: 'GET', url, headers: a1.headers })).statusCode, 404, "a user's token: 404");
  t.equal((await send(app, { method: 'GET', url })).statusCode, 401, 'no credentials: 401');
  t.equal((await send(app, { method: 'GET', url: new URL(location).pathname, headers: B.headers })).statusCode, 404, 'the status neither');
});

t.test("a user's token exports that user's records only", async (t) => {
  const { manifest } = await exported('$export', a1.headers);
  t.same(typed(await allOutput(manifest, a1.headers)), [...recA1.ids].sort());
  const pat = await exported('Patient/$export', a2.headers);
  t.same(typed(await allOutput(pat.manifest, a2.headers)), [...recA2.ids].sort(), 'Patient/$export the same');
});

t.test("Patient/$export with the app's credentials: every user's records, not the app's own; `patient` narrows", async (t) => {
  const all = await exported('Patient/$export', A.headers);
  t.same(typed(await allOutput(all.manifest, A.headers)), [...recA1.ids, ...recA2.ids].sort());
  const one = await exported('Patient/$export', A.headers, {
    method: 'POST',
    payload: { resourceType: 'Parameters', parameter: [{ name: 'patient', valueReference: { reference: `Patient/${recA2.patient}` } }] },
  });
  t.same(typed(await allOutput(one.manifest, A.headers)), [...recA2.ids].sort());
  // A user naming another user's Patient, and one that does not exist: the same answer, nothing of theirs.
  const mine = await exported(`Patient/$export?patient=Patient/${recA2.patient}&patient=Patient/nobody`, a1.headers);
  t.same(mine.manifest.output, [], "nothing of the other user's");
  const issues = (await download(mine.manifest.error[0].url, a1.headers)).map((o) => o.issue[0].diagnostics.replace(/Patient\/\S+/, 'P'));
  t.same(issues, ['P is not a Patient of yours; its records are not exported.', 'P is not a Patient of yours; its records are not exported.']);
});

t.test("Group/[id]/$export: the members' records; members that are no Patient of the app in the error file", async (t) => {
  const group = await post(A.headers, {
    resourceType: 'Group',
    type: 'person',
    actual: true,
    member: [{ entity: { reference: `Patient/${recA1.patient}` } }, { entity: { reference: `Patient/${recB1.patient}` } }],
  });
  const { manifest } = await exported(`Group/${group.id}/$export`, A.headers);
  t.same(typed(await allOutput(manifest, A.headers)), [...recA1.ids].sort(), "only the app's member's records");
  t.equal(manifest.error.length, 1);
  const [issue] = await download(manifest.error[0].url, A.headers);
  t.equal(issue.resourceType, 'OperationOutcome');
  t.match(issue.issue[0].diagnostics, `Patient/${recB1.patient} is not a Patient of this app`);
  t.equal((await kickoff(`Group/${group.id}/$export`, a1.headers)).statusCode, 403, "a user's token cannot export a Group");
  t.equal((await kickoff('Group/nope/$export', A.headers)).statusCode, 404, 'no such Group');
});

t.test('_type, _typeFilter and _since choose what is exported', async (t) => {
  const obs = await exported('$export?_type=Observation', A.headers);
  t.same(
    obs.manifest.output.map((o: Json) => o.type),
    ['Observation'],
  );
  t.equal(obs.manifest.output[0].count, 4);
  const filtered = await exported(
    `$export?_type=Observation,Patient&_typeFilter=${encodeURIComponent(`Observation?code=${LOINC}|2222-2`)}`,
    A.headers,
  );
  const rows = await allOutput(filtered.manifest, A.headers);
  t.equal(rows.filter((r) => r.resourceType === 'Observation').length, 2, 'the filtered type: its matches');
  t.ok(
    rows.filter((r) => r.resourceType === 'Observation').every((r) => r.code.coding[0].code === '2222-2'),
    'and only those',
  );
  t.equal(rows.filter((r) => r.resourceType === 'Patient').length, 2, 'the other type whole');
  const since = new Date().toISOString();
  await new Promise((r) => setTimeout(r, 20));
  const later = await post(a1.headers, { resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '3333-3' }] } });
  const changed = await exported(`$export?_since=${since}`, A.headers);
  t.same(typed(await allOutput(changed.manifest, A.headers)), [`Observation/${later.id}`], '_since: what changed after it');
});

t.test("a token's scopes limit the types exported", async (t) => {
  const obsOnly = await tokenOf(A, a1.userId, 'patient/Observation.rs');
  const { manifest } = await exported('$export', obsOnly);
  t.ok(manifest.output.length > 0);
  t.ok(
    manifest.output.every((o: Json) => o.type === 'Observation'),
    'only Observation',
  );
  const res = await kickoff('$export?_type=Patient', obsOnly);
  t.equal(res.statusCode, 403, 'a type the scopes do not grant, asked for: 403');
  t.equal(res.json().resourceType, 'OperationOutcome');
});

t.test('bad kick-offs are 4xx OperationOutcomes, and nothing is queued', async (t) => {
  const cases: [string, string, number, RegExp, Parameters<typeof kickoff>[2]?][] = [
    ['no Prefer: respond-async', '$export', 400, /respond-async/, { prefer: '' }],
    ['an unknown parameter', '$export?_elements=id', 400, /does not take "_elements"/],
    ['an unknown type', '$export?_type=Nope', 400, /"Nope" is not a FHIR R4 resource type/],
    ['another output format', '$export?_outputFormat=text/csv', 400, /_outputFormat/],
    ['a bad _since', '$export?_since=yesterday', 400, /_since must be a FHIR instant/],
    ['a _typeFilter parameter the type lacks', `$export?_typeFilter=${encodeURIComponent('Observation?nope=1')}`, 400, /no search parameter "nope"/],
    ['a _typeFilter value that does not parse', `$export?_typeFilter=${encodeURIComponent('Observation?date=notadate')}`, 400, /./],
    ['a _typeFilter of a type _type leaves out', `$export?_type=Patient&_typeFilter=${encodeURIComponent('Observation?code=x')}`, 400, /leaves out/],
    ['patient at system level', '$export?patient=Patient/x', 400, /patient applies to/],
    ['a POST body that is no Parameters', '$export', 400, /Parameters/, { method: 'POST', payload: { resourceType: 'Patient' } }],
  ];
  const before = await app.pg.query('SELECT count(*)::int AS n FROM trb_export');
  for (const [what, path, status, message, opts] of cases) {
    const res = await kickoff(path, A.headers, opts);
    t.equal(res.statusCode, status, what);
    t.equal(res.json().resourceType, 'OperationOutcome', `${what}: an OperationOutcome`);
    t.match(res.json().issue?.[0]?.diagnostics, message, `${what}: says why`);
  }
  t.equal((await app.pg.query('SELECT count(*)::int AS n FROM trb_export')).rows[0].n, before.rows[0].n, 'no export was made');
  t.equal((await kickoff('$export', A.headers, { prefer: 'respond-async, handling=lenient' })).statusCode, 202, 'lenient takes Prefer lists');
  t.equal((await send(app, { method: 'GET', url: `${FHIR}/$export-status/not-a-uuid`, headers: A.headers })).statusCode, 404);
});

t.test('DELETE on the status URL removes the export and its files; expired exports are removed', async (t) => {
  const { location, manifest } = await exported('$export', A.headers);
  const status = new URL(location).pathname;
  const del = await send(app, { method: 'DELETE', url: status, headers: A.headers });
  t.equal(del.statusCode, 202);
  t.equal((await send(app, { method: 'GET', url: status, headers: A.headers })).statusCode, 404, 'the status is gone');
  t.equal(
    (await send(app, { method: 'GET', url: new URL(manifest.output[0].url).pathname, headers: A.headers })).statusCode,
    404,
    'so are the files',
  );
  const id = status.split('/').pop()!;
  t.equal((await app.pg.query('SELECT count(*)::int AS n FROM trb_export_part WHERE export_id = $1', [id])).rows[0].n, 0, 'its bytes too');

  // Deleted while it runs (it waits 2 s before reading): it stops, and leaves nothing behind.
  const running = await kickoff('$export', A.headers);
  const runningStatus = new URL(String(running.headers['content-location'])).pathname;
  t.equal((await send(app, { method: 'DELETE', url: runningStatus, headers: A.headers })).statusCode, 202, 'a running export deleted');
  await new Promise((r) => setTimeout(r, 3500));
  const runningId = runningStatus.split('/').pop()!;
  t.equal((await send(app, { method: 'GET', url: runningStatus, headers: A.headers })).statusCode, 404);
  t.equal((await app.pg.query('SELECT count(*)::int AS n FROM trb_export_part WHERE export_id = $1', [runningId])).rows[0].n, 0, 'no part written');

  const old = await exported('$export', A.headers);
  const oldId = new URL(old.location).pathname.split('/').pop()!;
  // The clock moved past its expiry (EXPORT_TTL_HOURS after completion).
  await app.pg.query(`UPDATE trb_export SET expires_at = now() - interval '1 second' WHERE id = $1`, [oldId]);
  t.equal(
    (await send(app, { method: 'GET', url: new URL(old.location).pathname, headers: A.headers })).statusCode,
    404,
    'an expired export answers 404',
  );
  t.ok((await expireExports(app.pg)).removed >= 1, 'the sweep removes it');
  t.equal((await app.pg.query('SELECT count(*)::int AS n FROM trb_export_part WHERE export_id = $1', [oldId])).rows[0].n, 0, 'with its files');
});

t.test('transactionTime is honest under concurrent writes: the export holds each resource as it was at that instant', async (t) => {
  const w = await person(A, 'writer');
  const writes: Promise<unknown>[] = [];
  let stop = false;
  const ids: string[] = [];
  // Writers: creates, updates and deletes, before, during and after the kick-off.
  const writer = async () => {
    while (!stop) {
      const o = await post(w.headers, { resourceType: 'Observation', status: 'preliminary', code: { text: 'x' } });
      ids.push(o.id);
      const pick = ids[Math.floor(Math.random() * ids.length)];
      const r = Math.random();
      if (r < 0.4)
        await send(app, {
          method: 'PUT',
          url: `${FHIR}/Observation/${pick}`,
          headers: { ...w.headers, 'content-type': FHIR_JSON },
          payload: { resourceType: 'Observation', id: pick, status: 'final', code: { text: String(Math.random()) } },
        });
      else if (r < 0.5) await send(app, { method: 'DELETE', url: `${FHIR}/Observation/${pick}`, headers: w.headers });
    }
  };
  for (let i = 0; i < 4; i++) writes.push(writer());
  await new Promise((r) => setTimeout(r, 300));
  const k = await kickoff('$export?_type=Observation', w.headers);
  await new Promise((r) => setTimeout(r, 2500));
  stop = true;
  await Promise.all(writes);
  const { res } = await poll(String(k.headers['content-location']), w.headers);
  const manifest = res.json() as Json;
  const rows = manifest.output.length ? await allOutput(manifest, w.headers) : [];
  const T = new Date(manifest.transactionTime);
  // What each resource was at T, from its history (read now that every write is over).
  const { rows: expected } = await app.pg.query<{ fhir_id: string; res_ver: string }>(
    `SELECT r.fhir_id, v.res_ver FROM hfj_resource r CROSS JOIN LATERAL (
       SELECT res_ver, res_text_vc FROM hfj_res_ver v WHERE v.res_id = r.res_id AND v.res_updated <= $2 ORDER BY res_ver DESC LIMIT 1) v
     WHERE r.partition_id = $1 AND r.owner_id = $3 AND r.res_type = 'Observation' AND v.res_text_vc IS NOT NULL`,
    [A.app.id, T, w.userId],
  );
  const got = rows.map((r) => `${r.id}@${r.meta.versionId}`).sort();
  const want = expected.map((e) => `${e.fhir_id}@${e.res_ver}`).sort();
  t.ok(want.length > 10, `writes happened before T (${want.length} resources at T)`);
  const { rows: after } = await app.pg.query(`SELECT count(*)::int AS n FROM hfj_res_ver WHERE partition_id = $1 AND res_updated > $2`, [
    A.app.id,
    T,
  ]);
  t.ok(after[0].n > 10, `and after it (${after[0].n} versions)`);
  t.same(got, want, 'exactly the versions current at transactionTime');
  t.ok(
    rows.every((r) => Date.parse(r.meta.lastUpdated) <= T.getTime()),
    'none updated after it',
  );
});

t.test('the CapabilityStatement lists the export operations', async (t) => {
  const cs = (await send(app, { method: 'GET', url: `${FHIR}/metadata` })).json();
  const rest = cs.rest[0];
  t.ok(
    rest.operation.some((o: Json) => o.name === 'export' && o.definition === 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export'),
    'system $export',
  );
  const patient = rest.resource.find((r: Json) => r.type === 'Patient');
  t.ok(patient.operation.some((o: Json) => o.definition === 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export'));
  const group = rest.resource.find((r: Json) => r.type === 'Group');
  t.ok(group.operation.some((o: Json) => o.definition === 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export'));
  t.ok(cs.instantiates.includes('http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data'));
  const sub = rest.resource.find((r: Json) => r.type === 'Subscription');
  t.same(
    sub.operation.map((o: Json) => o.name),
    ['status', 'events'],
    "the Subscriptions backport's operations",
  );
  t.ok(sub.extension.length > 0, 'and its topics');
  t.match(cs.implementationGuide, [/subscriptions-backport/]);
});

t.test('a Group of 10,000 members is made through the API and exported', async (t) => {
  const big = await person(A, 'many');
  const entry = Array.from({ length: 10_000 }, (_, i) => ({
    resource: { resourceType: 'Patient', id: `m${i}`, name: [{ family: `Member${i}` }] },
    request: { method: 'PUT', url: `Patient/m${i}` },
  }));
  const bundle = await send(
    app,
    { method: 'POST', url: FHIR, headers: { ...big.headers, 'content-type': FHIR_JSON }, payload: { resourceType: 'Bundle', type: 'batch', entry } },
    120_000,
  );
  t.equal(bundle.statusCode, 200, '10,000 Patients written');
  const group = await send(
    app,
    {
      method: 'POST',
      url: `${FHIR}/Group`,
      headers: { ...A.headers, 'content-type': FHIR_JSON },
      payload: {
        resourceType: 'Group',
        type: 'person',
        actual: true,
        member: entry.map((e) => ({ entity: { reference: `Patient/${e.resource.id}` } })),
      },
    },
    60_000,
  );
  t.equal(group.statusCode, 201, 'a Group of 10,000 members created');
  const { manifest } = await exported(`Group/${group.json().id}/$export?_type=Patient`, A.headers);
  t.same(
    manifest.output.map((o: Json) => [o.type, o.count]),
    [['Patient', 10_000]],
  );
  t.same(manifest.error, []);
  // Over 1 MiB: a file of several parts, downloaded whole and in order.
  const rows = await download(manifest.output[0].url, A.headers);
  t.equal(new Set(rows.map((r) => r.id)).size, 10_000, 'every member once, in a file of several parts');
  const { rows: parts } = await app.pg.query(
    'SELECT count(*)::int AS n FROM trb_export_part p JOIN trb_export_file f USING (export_id, file_no) WHERE f.count = 10000',
  );
  t.ok(parts[0].n >= 2, `${parts[0].n} parts`);
});

t.test('another process on the same database answers the status and the files', async (t) => {
  const url = await testDatabase(t);
  const [one, two] = [await buildApp(testConfig(url, { fhirAuth: 'required' })), await buildApp(testConfig(url, { fhirAuth: 'required' }))];
  t.teardown(async () => {
    await two.close();
    await one.close();
  });
  await Promise.all([one.ready(), two.ready()]);
  const { app: created, clientSecret } = await one.auth.createApp({ name: 'two processes' });
  const headers = { client_id: created.clientId, client_secret: clientSecret, 'x-oneup-user-id': 'client' };
  const p = await send(one, {
    method: 'POST',
    url: `${FHIR}/Patient`,
    headers: { ...headers, 'content-type': FHIR_JSON },
    payload: { resourceType: 'Patient', name: [{ family: 'Twice' }] },
  });
  const k = await send(one, { method: 'GET', url: `${FHIR}/$export`, headers: { ...headers, ...ASYNC } });
  t.equal(k.statusCode, 202, 'kicked off on one');
  const status = new URL(String(k.headers['content-location'])).pathname;
  let res: LightMyRequestResponse;
  for (let i = 0; ; i++) {
    res = await send(two, { method: 'GET', url: status, headers });
    if (res.statusCode !== 202 || i > 300) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  t.equal(res.statusCode, 200, 'the manifest from the other');
  const file = await send(two, { method: 'GET', url: new URL(res.json().output[0].url).pathname, headers });
  t.equal(file.statusCode, 200);
  t.equal(file.headers['content-type'], 'application/fhir+ndjson');
  t.equal(JSON.parse(file.body.trim()).id, p.json().id, 'and its file');
});

t.test('a resource larger than a part (1 MiB) is exported whole, between the others', async (t) => {
  const D = await tenant('export D');
  const data = Buffer.alloc(1_100_000, 'tributary ').toString('base64');
  const small = await post(D.headers, { resourceType: 'Binary', contentType: 'text/plain', data: 'c21hbGw=' });
  const big = await post(D.headers, { resourceType: 'Binary', contentType: 'text/plain', data });
  const { manifest } = await exported('$export?_type=Binary', D.headers);
  const rows = await download(manifest.output[0].url, D.headers);
  t.same(rows.map((r) => r.id).sort(), [small.id, big.id].sort());
  t.equal(rows.find((r) => r.id === big.id)?.data, data, 'its data intact');
});

t.test('a download over HTTP that the client abandons midway frees its connection; the next one is whole', async (t) => {
  const E = await tenant('export E');
  const data = Buffer.alloc(1_500_000, 'abandoned ').toString('base64');
  for (let i = 0; i < 3; i++) await post(E.headers, { resourceType: 'Binary', contentType: 'text/plain', data });
  const { manifest } = await exported('$export?_type=Binary', E.headers);
  const server = await buildApp(testConfig(app.config.databaseUrl!, { fhirAuth: 'required' }));
  t.teardown(() => server.close());
  const base = await server.listen({ port: 0, host: '127.0.0.1' });
  const url = `${base}${new URL(manifest.output[0].url).pathname}`;
  for (let i = 0; i < 5; i++) {
    const abort = new AbortController();
    const res = await fetch(url, { headers: E.headers, signal: abort.signal });
    t.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    t.ok(first.value && first.value.length > 0, 'the first bytes came');
    abort.abort();
    await reader.cancel().catch(() => {});
  }
  // Each abandoned COPY's connection is closed (not handed back mid-COPY): none is left copying.
  const copying = async () =>
    Number(
      (
        await app.pg.query(
          `SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT body FROM trb_export_part%' AND state <> 'idle'`,
        )
      ).rows[0].n,
    );
  let left = await copying();
  for (let i = 0; left > 0 && i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    left = await copying();
  }
  t.equal(left, 0, 'no COPY left running');
  const whole = await fetch(url, { headers: E.headers });
  const lines = (await whole.text()).split('\n').filter(Boolean);
  t.equal(lines.length, 3, 'a whole download after them');
  t.ok(
    lines.every((l) => JSON.parse(l).data === data),
    'every resource intact',
  );
  t.equal((await server.pg.query('SELECT 1 AS one')).rows[0].one, 1, 'the pool works');
  // Accept-Encoding: gzip: the same bytes, compressed.
  const plain = await send(app, { method: 'GET', url: new URL(url).pathname, headers: E.headers });
  const zipped = await send(app, { method: 'GET', url: new URL(url).pathname, headers: { ...E.headers, 'accept-encoding': 'br;q=1, gzip;q=0.8' } });
  t.equal(zipped.headers['content-encoding'], 'gzip', 'gzip when the client takes it');
  t.ok(zipped.rawPayload.length < plain.rawPayload.length / 3, `smaller: ${zipped.rawPayload.length} of ${plain.rawPayload.length} bytes`);
  t.ok(gunzipSync(zipped.rawPayload).equals(plain.rawPayload), 'the same bytes once unzipped');
  const refused = await send(app, { method: 'GET', url: new URL(url).pathname, headers: { ...E.headers, 'accept-encoding': 'gzip;q=0' } });
  t.equal(refused.headers['content-encoding'], undefined, 'gzip;q=0: not compressed');
  t.equal(refused.headers['content-length'], String(plain.rawPayload.length));
});

t.test('an app with 5 exports waiting or running is told to come back (429, Retry-After)', async (t) => {
  const C = await tenant('export C');
  await post(C.headers, { resourceType: 'Patient', name: [{ family: 'Busy' }] });
  const started: string[] = [];
  for (let i = 0; i < 5; i++) {
    const k = await kickoff('$export', C.headers);
    t.equal(k.statusCode, 202, `export ${i + 1} accepted`);
    started.push(new URL(String(k.headers['content-location'])).pathname);
  }
  const sixth = await kickoff('$export', C.headers);
  t.equal(sixth.statusCode, 429, 'the sixth: 429');
  t.equal(sixth.headers['retry-after'], '30');
  t.match(sixth.json().issue[0].diagnostics, /5 exports waiting or running/);
  for (const s of started) await send(app, { method: 'DELETE', url: s, headers: C.headers });
  t.equal((await kickoff('$export', C.headers)).statusCode, 202, 'once they are deleted, accepted again');
});
