import t from 'tap';
import { buildTestApp } from '../helper.ts';

const app = await buildTestApp(t);
const JSON_CT = { 'content-type': 'application/fhir+json' };

t.test('create, read, update, vread, history, delete', async (t) => {
  const created = await app.inject({
    method: 'POST',
    url: '/fhir/r4/Patient',
    headers: JSON_CT,
    payload: { resourceType: 'Patient', name: [{ family: 'Chalmers', given: ['Peter'] }], gender: 'male' },
  });
  t.equal(created.statusCode, 201, created.body);
  const p = created.json();
  t.match(p, { resourceType: 'Patient', id: String, meta: { versionId: '1' } });
  t.equal(created.headers.etag, 'W/"1"');
  t.match(created.headers.location, new RegExp(`/fhir/r4/Patient/${p.id}/_history/1$`));

  const read = await app.inject({ url: `/fhir/r4/Patient/${p.id}` });
  t.equal(read.statusCode, 200);
  t.same(read.json().name, [{ family: 'Chalmers', given: ['Peter'] }]);

  const same = await app.inject({ method: 'PUT', url: `/fhir/r4/Patient/${p.id}`, headers: JSON_CT, payload: { ...p, meta: undefined } });
  t.equal(same.statusCode, 200);
  t.equal(same.json().meta.versionId, '1', 'a write that changes nothing makes no version');

  const upd = await app.inject({
    method: 'PUT',
    url: `/fhir/r4/Patient/${p.id}`,
    headers: { ...JSON_CT, 'if-match': 'W/"1"' },
    payload: { ...p, gender: 'female' },
  });
  t.equal(upd.statusCode, 200, upd.body);
  t.equal(upd.json().meta.versionId, '2');

  const stale = await app.inject({
    method: 'PUT',
    url: `/fhir/r4/Patient/${p.id}`,
    headers: { ...JSON_CT, 'if-match': 'W/"1"' },
    payload: { ...p, gender: 'other' },
  });
  t.equal(stale.statusCode, 412);

  const v1 = await app.inject({ url: `/fhir/r4/Patient/${p.id}/_history/1` });
  t.equal(v1.json().gender, 'male');

  const hist = await app.inject({ url: `/fhir/r4/Patient/${p.id}/_history` });
  t.equal(hist.json().total, 2);

  const del = await app.inject({ method: 'DELETE', url: `/fhir/r4/Patient/${p.id}` });
  t.equal(del.statusCode, 200);
  const gone = await app.inject({ url: `/fhir/r4/Patient/${p.id}` });
  t.equal(gone.statusCode, 410);
  const hist2 = await app.inject({ url: `/fhir/r4/Patient/${p.id}/_history` });
  t.equal(hist2.json().total, 3);
  t.equal(hist2.json().entry[0].request.method, 'DELETE');
});

t.test('errors are OperationOutcomes', async (t) => {
  const r1 = await app.inject({ url: '/fhir/r4/Nope/1' });
  t.equal(r1.statusCode, 404);
  t.equal(r1.json().resourceType, 'OperationOutcome');
  const r2 = await app.inject({ url: '/fhir/r4/Patient/bad$id' });
  t.equal(r2.statusCode, 400);
  const r3 = await app.inject({ url: '/fhir/r4/Patient/does-not-exist' });
  t.equal(r3.statusCode, 404);
  const r4 = await app.inject({ method: 'POST', url: '/fhir/r4/Patient', headers: JSON_CT, payload: '{"resourceType":"Patient",' });
  t.equal(r4.statusCode, 400);
  t.equal(r4.json().resourceType, 'OperationOutcome');
  const r5 = await app.inject({ url: '/fhir/r4/metadata', headers: { accept: 'application/fhir+xml' } });
  t.equal(r5.statusCode, 406);
});

t.test('conditional create, update and delete find matches through the indexes', async (t) => {
  const body = { resourceType: 'Patient', identifier: [{ system: 'urn:mrn', value: 'A-1' }], name: [{ family: 'Ångström', given: ['Ève'] }] };
  const first = await app.inject({
    method: 'POST',
    url: '/fhir/r4/Patient',
    headers: { ...JSON_CT, 'if-none-exist': 'identifier=urn:mrn|A-1' },
    payload: body,
  });
  t.equal(first.statusCode, 201);
  const again = await app.inject({
    method: 'POST',
    url: '/fhir/r4/Patient',
    headers: { ...JSON_CT, 'if-none-exist': 'identifier=urn:mrn|A-1' },
    payload: body,
  });
  t.equal(again.statusCode, 200, 'an existing match is returned, not created again');
  t.equal(again.json().id, first.json().id);

  const byName = await app.inject({ url: '/fhir/r4/Patient?name=angst' });
  t.equal(byName.json().total, 1, 'string search is accent and case insensitive, by prefix');
  const noMatch = await app.inject({ url: '/fhir/r4/Patient?name=zzz' });
  t.equal(noMatch.json().total, 0);

  const cu = await app.inject({
    method: 'PUT',
    url: '/fhir/r4/Patient?identifier=urn:mrn|A-1',
    headers: JSON_CT,
    payload: { ...body, gender: 'female' },
  });
  t.equal(cu.statusCode, 200);
  t.equal(cu.json().id, first.json().id);
  t.equal(cu.json().meta.versionId, '2');

  const cd = await app.inject({ method: 'DELETE', url: '/fhir/r4/Patient?identifier=urn:mrn|A-1' });
  t.equal(cd.statusCode, 200);
  const read = await app.inject({ url: `/fhir/r4/Patient/${first.json().id}` });
  t.equal(read.statusCode, 410);
});
