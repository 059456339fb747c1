/**
 * A SearchParameter stored through one process is searchable in every process on the database: the
 * write NOTIFYs as it commits, and each process adds what was stored (plugins/core.ts). Two
 * servers on one database (FHIR_AUTH=off, where stored SearchParameters are searchable): one
 * stores it, the other indexes its own writes by it and searches by it, and so does a server
 * started later (from the stored ones).
 */
import t from 'tap';
import { buildApp } from '../../src/app.ts';
import { testConfig, testDatabase, waitFor } from '../helper.ts';
import { FHIR, FHIR_JSON, type Json, send } from './search-support.ts';

const url = await testDatabase(t);
const start = async () => {
  const app = await buildApp(testConfig(url), { logger: false });
  t.teardown(() => app.close());
  await app.ready();
  return app;
};
const [one, two] = [await start(), await start()];

const patient = (family: string, status: string): Json => ({
  resourceType: 'Patient',
  name: [{ family }],
  maritalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: status }] },
});
const post = (app: typeof one, resource: Json) =>
  send(app, { method: 'POST', url: `${FHIR}/${resource.resourceType}`, headers: { 'content-type': FHIR_JSON }, payload: resource });
const found = async (app: typeof one, query: string) => {
  const res = await send(app, { method: 'GET', url: `${FHIR}/${query}` });
  const body = res.json();
  return {
    ids: ((body.entry ?? []) as Json[])
      .filter((e) => e.search?.mode === 'match')
      .map((e) => e.resource.name?.[0]?.family as string)
      .sort(),
    warned: ((body.entry ?? []) as Json[]).some((e) => e.search?.mode === 'outcome'),
  };
};

t.test('stored through one process, searchable through the other', async (t) => {
  t.equal((await post(two, patient('Before', 'M'))).statusCode, 201, 'a Patient written before the parameter');
  const stored = await post(one, {
    resourceType: 'SearchParameter',
    url: 'http://example.org/fhir/SearchParameter/patient-marital-status-processes',
    name: 'MaritalStatus',
    status: 'active',
    description: 'Marital status of a Patient',
    code: 'marital-status',
    base: ['Patient'],
    type: 'token',
    expression: 'Patient.maritalStatus',
  });
  t.equal(stored.statusCode, 201, 'the SearchParameter stored through the first');
  const heard = await waitFor(async () => !(await found(two, 'Patient?marital-status=M')).warned, 5_000);
  t.ok(heard, 'the second knows the parameter (no warning that it is unknown)');
  t.equal((await post(two, patient('Married', 'M'))).statusCode, 201);
  t.equal((await post(two, patient('Single', 'S'))).statusCode, 201);
  // Written before the parameter existed, the first Patient is found only after a $reindex.
  t.same((await found(two, 'Patient?marital-status=M')).ids, ['Married'], 'the second indexed its own write by it, and searches by it');
  t.same((await found(one, 'Patient?marital-status=M')).ids, ['Married'], 'the first finds it too');
  const three = await start();
  t.same((await found(three, 'Patient?marital-status=S')).ids, ['Single'], 'a process started later reads it from the store');
});
