import t from 'tap';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildTestApp } from '../helper.ts';

const app = await buildTestApp(t);
const JSON_CT = { 'content-type': 'application/fhir+json' };
const BASE = 'http://tributary.test';

type Json = Record<string, any>;
const post = (url: string, payload: object, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url, headers: { ...JSON_CT, ...headers }, payload });
const put = (url: string, payload: object, headers: Record<string, string> = {}) =>
  app.inject({ method: 'PUT', url, headers: { ...JSON_CT, ...headers }, payload });
const get = async (url: string, headers: Record<string, string> = {}) => app.inject({ url, headers });
const getJson = async (url: string): Promise<Json> => (await get(url)).json();
const versions = (b: Json) => (b.entry ?? []).map((e: Json) => e.resource?.meta?.versionId);
const linkOf = (b: Json, rel: string): string | undefined => b.link?.find((l: Json) => l.relation === rel)?.url;

t.test('health and readiness', async (t) => {
  const h = await get('/healthz');
  t.equal(h.statusCode, 200);
  t.same(h.json(), { status: 'ok' });
  const r = await get('/readyz');
  t.equal(r.statusCode, 200);
});

t.test('CapabilityStatement', async (t) => {
  for (const url of ['/fhir/r4/metadata', '/r4/metadata']) {
    const res = await get(url);
    t.equal(res.statusCode, 200, url);
    const cs = res.json();
    t.equal(cs.resourceType, 'CapabilityStatement');
    t.equal(cs.fhirVersion, '4.0.1');
    t.ok(cs.format.includes('application/fhir+json'));
    const sys = cs.rest[0].interaction.map((i: Json) => i.code);
    for (const c of ['transaction', 'batch', 'history-system']) t.ok(sys.includes(c), `system interaction ${c}`);
    const res0 = (type: string) => cs.rest[0].resource.find((r: Json) => r.type === type);
    const patient = res0('Patient');
    const codes = patient.interaction.map((i: Json) => i.code);
    for (const c of ['read', 'vread', 'update', 'patch', 'delete', 'create', 'search-type', 'history-instance', 'history-type'])
      t.ok(codes.includes(c), `Patient ${c}`);
    const pParams = patient.searchParam.map((p: Json) => p.name);
    for (const p of ['name', 'identifier', 'birthdate']) t.ok(pParams.includes(p), `Patient param ${p}`);
    const oParams = res0('Observation').searchParam.map((p: Json) => p.name);
    for (const p of ['code', 'patient', 'date']) t.ok(oParams.includes(p), `Observation param ${p}`);
  }
});

t.test('history: instance, type, system, paging, _since, _at, deletes', async (t) => {
  const c = await post('/fhir/r4/Patient', { resourceType: 'Patient', name: [{ family: 'Hist' }] });
  t.equal(c.statusCode, 201);
  const p = c.json();
  const stamps: string[] = [p.meta.lastUpdated];
  // Distinct timestamps for each write, so _since / _at have something to tell apart.
  for (const g of ['male', 'female']) {
    await sleep(5);
    const u = await put(`/fhir/r4/Patient/${p.id}`, { ...p, meta: undefined, gender: g });
    t.equal(u.statusCode, 200);
    stamps.push(u.json().meta.lastUpdated);
  }
  await sleep(5);
  const o = await post('/fhir/r4/Observation', {
    resourceType: 'Observation',
    status: 'final',
    code: { text: 'hist' },
    subject: { reference: `Patient/${p.id}` },
  });
  t.equal(o.statusCode, 201);
  const obs = o.json();

  const inst = await getJson(`/fhir/r4/Patient/${p.id}/_history`);
  t.equal(inst.type, 'history');
  t.equal(inst.total, 3);
  t.same(versions(inst), ['3', '2', '1'], 'newest first');

  const page1 = await getJson(`/fhir/r4/Patient/${p.id}/_history?_count=1`);
  t.equal(page1.entry.length, 1);
  t.same(versions(page1), ['3']);
  const next = linkOf(page1, 'next');
  t.ok(next?.startsWith(BASE), 'next link is absolute');
  const page2 = await getJson(next!.slice(BASE.length));
  t.same(versions(page2), ['2'], 'the next page holds the next version');

  const typeH = await getJson('/fhir/r4/Patient/_history?_count=1000');
  t.ok(typeH.entry.length >= 3);
  t.ok(
    typeH.entry.every((e: Json) => e.resource.resourceType === 'Patient'),
    'type history has only Patients',
  );

  const sysH = await getJson('/fhir/r4/_history?_count=1000');
  const types = new Set(sysH.entry.map((e: Json) => e.resource?.resourceType));
  t.ok(types.has('Patient') && types.has('Observation'), 'system history has both types');

  const since = await getJson(`/fhir/r4/Patient/${p.id}/_history?_since=${encodeURIComponent(stamps[1])}`);
  t.same(versions(since), ['3', '2'], '_since keeps versions at or after it');
  const sysSince = await getJson(`/fhir/r4/_history?_since=${encodeURIComponent(stamps[1])}`);
  t.ok(sysSince.entry.every((e: Json) => Date.parse(e.response.lastModified) >= Date.parse(stamps[1])));
  t.ok(
    sysSince.entry.some((e: Json) => e.resource?.id === obs.id),
    'a later write of another type is there',
  );

  const at = await getJson(`/fhir/r4/Patient/${p.id}/_history?_at=${encodeURIComponent(stamps[1])}`);
  t.same(versions(at), ['2'], '_at answers the version current at that instant');

  const del = await app.inject({ method: 'DELETE', url: `/fhir/r4/Observation/${obs.id}` });
  t.equal(del.statusCode, 200);
  const oh = await getJson(`/fhir/r4/Observation/${obs.id}/_history`);
  t.equal(oh.total, 2);
  t.equal(oh.entry[0].request.method, 'DELETE');
  t.notOk(oh.entry[0].resource, 'a delete has no resource');
  t.equal(oh.entry[1].resource.meta.versionId, '1');
});

t.test('transaction', async (t) => {
  const purn = `urn:uuid:${randomUUID()}`;
  const bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        fullUrl: purn,
        resource: { resourceType: 'Patient', identifier: [{ system: 'urn:sys', value: 'X1' }] },
        request: { method: 'POST', url: 'Patient', ifNoneExist: 'identifier=urn:sys|X1' },
      },
      {
        resource: { resourceType: 'Observation', status: 'final', code: { text: 'tx' }, subject: { reference: purn } },
        request: { method: 'POST', url: 'Observation' },
      },
      { resource: { resourceType: 'Practitioner', id: 'pr1', name: [{ family: 'Doc' }] }, request: { method: 'PUT', url: 'Practitioner/pr1' } },
    ],
  };
  const r1 = await post('/fhir/r4', bundle);
  t.equal(r1.statusCode, 200, r1.body);
  const b1 = r1.json();
  t.equal(b1.type, 'transaction-response');
  t.same(
    b1.entry.map((e: Json) => e.response.status.slice(0, 3)),
    ['201', '201', '201'],
  );
  const m = /\/fhir\/r4\/Patient\/([^/]+)\/_history\/1$/.exec(b1.entry[0].response.location);
  t.ok(m, `Patient location ${b1.entry[0].response.location}`);
  const pid = m![1];
  t.match(b1.entry[2].response.location, /\/Practitioner\/pr1\/_history\/1$/);
  const obsPath = (loc: string) => loc.slice(BASE.length).replace(/\/_history\/\d+$/, '');
  const o1 = await getJson(obsPath(b1.entry[1].response.location));
  t.equal(o1.subject.reference, `Patient/${pid}`, 'urn:uuid resolved to the new id');

  const r2 = await post('/fhir/r4', bundle);
  t.equal(r2.statusCode, 200, r2.body);
  const b2 = r2.json();
  t.match(b2.entry[0].response.status, /^200/, 'ifNoneExist matched');
  t.match(b2.entry[1].response.status, /^201/);
  const o2 = await getJson(obsPath(b2.entry[1].response.location));
  t.not(o2.id, o1.id);
  t.equal(o2.subject.reference, `Patient/${pid}`, 'urn:uuid resolves to the matched Patient');
  const found = await getJson('/fhir/r4/Patient?identifier=urn:sys|X1');
  t.equal(found.total, 1, 'not created twice');

  const r3 = await post('/fhir/r4', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        resource: { resourceType: 'Observation', status: 'final', code: { text: 'cond' }, subject: { reference: 'Patient?identifier=urn:sys|X1' } },
        request: { method: 'POST', url: 'Observation' },
      },
    ],
  });
  t.equal(r3.statusCode, 200, r3.body);
  const o3 = await getJson(obsPath(r3.json().entry[0].response.location));
  t.equal(o3.subject.reference, `Patient/${pid}`, 'conditional reference resolved');

  // Entries listed in reverse of the processing order.
  const doomed = (await post('/fhir/r4/Patient', { resourceType: 'Patient', name: [{ family: 'Doomed' }] })).json();
  const nurn = `urn:uuid:${randomUUID()}`;
  const r4 = await post('/fhir/r4', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { request: { method: 'GET', url: 'Patient/order-put' } },
      { request: { method: 'GET', url: `Patient?_id=${doomed.id}` } },
      {
        resource: { resourceType: 'Patient', id: 'order-put', link: [{ other: { reference: nurn }, type: 'seealso' }] },
        request: { method: 'PUT', url: 'Patient/order-put' },
      },
      { fullUrl: nurn, resource: { resourceType: 'Patient', name: [{ family: 'New' }] }, request: { method: 'POST', url: 'Patient' } },
      { request: { method: 'DELETE', url: `Patient/${doomed.id}` } },
    ],
  });
  t.equal(r4.statusCode, 200, r4.body);
  const b4 = r4.json();
  t.same(
    b4.entry.map((e: Json) => e.response.status.slice(0, 3)),
    ['200', '200', '201', '201', '204'],
  );
  t.equal(b4.entry[0].resource?.id, 'order-put', 'the GET sees the PUT of the same transaction');
  t.match(b4.entry[0].resource?.link?.[0]?.other?.reference, /^Patient\/[^/]+$/, 'and the POST before it');
  t.equal(b4.entry[1].resource?.total, 0, 'the search sees the DELETE');
  t.equal((await get(`/fhir/r4/Patient/${doomed.id}`)).statusCode, 410);
});

t.test('batch entries succeed and fail one by one', async (t) => {
  const existing = (await post('/fhir/r4/Patient', { resourceType: 'Patient', name: [{ family: 'Existing' }] })).json();
  const res = await post('/fhir/r4', {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [
      { resource: { resourceType: 'Patient', identifier: [{ system: 'urn:sys', value: 'B1' }] }, request: { method: 'POST', url: 'Patient' } },
      { resource: { resourceType: 'Patient', gender: 'robot' }, request: { method: 'POST', url: 'Patient' } },
      { request: { method: 'GET', url: 'Patient/no-such-patient' } },
      { request: { method: 'GET', url: `Patient/${existing.id}` } },
    ],
  });
  t.equal(res.statusCode, 200, res.body);
  const b = res.json();
  t.equal(b.type, 'batch-response');
  t.same(
    b.entry.map((e: Json) => e.response.status.slice(0, 3)),
    ['201', '400', '404', '200'],
  );
  t.equal(b.entry[1].response.outcome?.resourceType, 'OperationOutcome');
  t.ok(
    b.entry[1].response.outcome.issue.some((i: Json) => i.expression?.includes('Bundle.entry[1].resource.gender')),
    'the outcome names the failing entry',
  );
  t.equal(b.entry[3].resource?.id, existing.id);
  t.equal((await getJson('/fhir/r4/Patient?identifier=urn:sys|B1')).total, 1, 'the valid entry was stored');
});

t.test('_summary, _elements and _pretty on read', async (t) => {
  const p = (
    await post('/fhir/r4/Patient', {
      resourceType: 'Patient',
      text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Summ</div>' },
      name: [{ family: 'Summ' }],
      gender: 'female',
      photo: [{ contentType: 'image/png', data: 'aGVsbG8=' }],
    })
  ).json();
  const url = `/fhir/r4/Patient/${p.id}`;
  const subsetted = (r: Json) => r.meta?.tag?.some((c: Json) => c.code === 'SUBSETTED');

  const sum = await getJson(`${url}?_summary=true`);
  t.ok(sum.name && sum.gender, 'summary keeps name and gender');
  t.notOk(sum.text, 'no text');
  t.notOk(sum.photo, 'no photo');
  t.ok(subsetted(sum), 'tagged SUBSETTED');

  const text = await getJson(`${url}?_summary=text`);
  t.ok(text.text);
  t.notOk(text.name);
  t.equal(text.id, p.id);

  const data = await getJson(`${url}?_summary=data`);
  t.notOk(data.text);
  t.ok(data.name && data.photo);
  t.ok(subsetted(data));

  const el = await getJson(`${url}?_elements=name`);
  t.same(Object.keys(el).sort(), ['id', 'meta', 'name', 'resourceType']);
  t.ok(subsetted(el));

  const pretty = await get(`${url}?_pretty=true`);
  t.ok(pretty.body.includes('\n  '), 'indented');
  t.notOk((await get(url)).body.includes('\n'), 'compact by default');
});

t.test('conditional read headers and Prefer', async (t) => {
  const p = (await post('/fhir/r4/Patient', { resourceType: 'Patient', name: [{ family: 'Cond' }] })).json();
  const url = `/fhir/r4/Patient/${p.id}`;
  const inm = await get(url, { 'if-none-match': 'W/"1"' });
  t.equal(inm.statusCode, 304);
  t.equal(inm.body, '');
  t.equal((await get(url, { 'if-none-match': 'W/"7"' })).statusCode, 200);
  const future = await get(url, { 'if-modified-since': new Date(Date.now() + 86_400_000).toUTCString() });
  t.equal(future.statusCode, 304);
  const past = await get(url, { 'if-modified-since': new Date('2000-01-01T00:00:00Z').toUTCString() });
  t.equal(past.statusCode, 200);
  t.equal(past.headers.etag, 'W/"1"');
  t.equal(past.headers['last-modified'], new Date(p.meta.lastUpdated).toUTCString());

  const minimal = await post('/fhir/r4/Patient', { resourceType: 'Patient' }, { prefer: 'return=minimal' });
  t.equal(minimal.statusCode, 201);
  t.equal(minimal.body, '');
  t.match(minimal.headers.location, /\/fhir\/r4\/Patient\/[^/]+\/_history\/1$/);
  const oo = await post('/fhir/r4/Patient', { resourceType: 'Patient' }, { prefer: 'return=OperationOutcome' });
  t.equal(oo.statusCode, 201);
  t.equal(oo.json().resourceType, 'OperationOutcome');
  t.ok(oo.headers.location);
});

t.test('update as create, and server-owned meta', async (t) => {
  const c = await put('/fhir/r4/Patient/put-new-1', { resourceType: 'Patient', id: 'put-new-1', gender: 'male' });
  t.equal(c.statusCode, 201, c.body);
  t.equal(c.json().meta.versionId, '1');
  t.equal((await get('/fhir/r4/Patient/put-new-1')).statusCode, 200);

  const bogus = await put('/fhir/r4/Patient/put-new-1', {
    resourceType: 'Patient',
    id: 'put-new-1',
    gender: 'female',
    meta: { versionId: '99', lastUpdated: '2001-01-01T00:00:00Z' },
  });
  t.equal(bogus.statusCode, 200, bogus.body);
  const read = await getJson('/fhir/r4/Patient/put-new-1');
  for (const r of [bogus.json(), read]) {
    t.equal(r.meta.versionId, '2');
    t.not(r.meta.lastUpdated, '2001-01-01T00:00:00Z');
    t.ok(Date.parse(r.meta.lastUpdated) > Date.parse('2020-01-01'), 'the server set lastUpdated');
  }
  t.equal(read.gender, 'female');
});

t.test('basic search', async (t) => {
  const ids: string[] = [];
  for (const [i, bd] of ['1970-06-01', '1980-01-01', '1990-01-01'].entries()) {
    ids.push(
      (await post('/fhir/r4/Patient', { resourceType: 'Patient', identifier: [{ system: 'urn:search', value: `S${i}` }], birthDate: bd })).json().id,
    );
  }
  const page = await getJson('/fhir/r4/Patient?_count=2');
  t.equal(page.type, 'searchset');
  t.ok(page.total >= 3, 'total');
  t.equal(page.entry.length, 2);
  const next = linkOf(page, 'next');
  t.ok(next, 'next link');
  const page2 = await getJson(next!.slice(BASE.length));
  t.equal(page2.entry.length, Math.min(2, page.total - 2));
  t.notOk(
    page2.entry.some((e: Json) => page.entry.some((f: Json) => f.resource.id === e.resource.id)),
    'pages do not overlap',
  );

  const obs = (
    await post('/fhir/r4/Observation', {
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
      subject: { reference: `Patient/${ids[0]}` },
    })
  ).json();
  const bySubject = await getJson(`/fhir/r4/Observation?subject=Patient/${ids[0]}`);
  t.equal(bySubject.total, 1);
  t.equal(bySubject.entry[0].resource.id, obs.id);
  const byCode = await getJson('/fhir/r4/Observation?code=http://loinc.org|8867-4');
  t.ok(
    byCode.entry.some((e: Json) => e.resource.id === obs.id),
    'token search',
  );
  t.equal((await getJson('/fhir/r4/Observation?code=http://loinc.org|0000-0')).total, 0);

  const y1970 = await getJson('/fhir/r4/Patient?birthdate=1970&identifier=urn:search|S0');
  t.equal(y1970.total, 1, 'year precision matches a date within it');
  const y1970all = await getJson('/fhir/r4/Patient?birthdate=1970');
  t.same(
    y1970all.entry.map((e: Json) => e.resource.id),
    [ids[0]],
  );
  const y1971 = await getJson('/fhir/r4/Patient?birthdate=1971&identifier=urn:search|S0');
  t.equal(y1971.total, 0);
});
