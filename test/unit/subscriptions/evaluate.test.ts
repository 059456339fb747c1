/**
 * The in-memory evaluation of subscription criteria against index rows, differentially: for each
 * criterion, what it matches among a small corpus must be exactly what the search engine's SQL
 * finds (the same rows stored), parameter type by parameter type; and what it leaves to SQL.
 */
import t from 'tap';
import type { Resource } from '@medplum/fhirtypes';
import { compileCriteria } from '../../../src/subscriptions/evaluate.ts';
import { buildTestApp } from '../../helper.ts';

const app = await buildTestApp(t);
const ctx = { partitionId: 0, ownerId: null, baseUrl: 'http://tributary.test/fhir/r4' };
const LOINC = 'http://loinc.org';

const corpus: Resource[] = [
  { resourceType: 'Patient', id: 'p1', name: [{ family: 'Ström', given: ['Åsa'] }], birthDate: '1970-05-01', gender: 'female' },
  { resourceType: 'Patient', id: 'p2', name: [{ family: 'Strand' }], birthDate: '1985', gender: 'male' },
  {
    resourceType: 'Observation',
    id: 'o1',
    status: 'final',
    code: { coding: [{ system: LOINC, code: '1234-5' }, { code: 'local' }] },
    subject: { reference: 'Patient/p1' },
    effectiveDateTime: '2024-03-05T10:00:00Z',
  },
  {
    resourceType: 'Observation',
    id: 'o2',
    status: 'amended',
    code: { coding: [{ system: 'http://other', code: '1234-5' }] },
    subject: { reference: 'Patient/p2' },
    effectivePeriod: { start: '2024-01-01', end: '2024-02-01' },
  },
  { resourceType: 'Observation', id: 'o3', status: 'final', code: { text: 'none' }, subject: { reference: 'http://elsewhere.example/Patient/9' } },
  {
    resourceType: 'Observation',
    id: 'o4',
    status: 'preliminary',
    code: { coding: [{ system: LOINC, code: '9999-9' }] },
    effectivePeriod: { start: '2023-06-01' },
  },
  { resourceType: 'ValueSet', id: 'v1', status: 'active', url: 'http://example.org/vs/1' },
];

const CRITERIA: [string, string][] = [
  ['Observation', 'code=1234-5'],
  ['Observation', `code=${LOINC}|1234-5`],
  ['Observation', `code=${LOINC}|`],
  ['Observation', 'code=|local'],
  ['Observation', 'code:not=1234-5'],
  ['Observation', `code=${LOINC}|1234-5,${LOINC}|9999-9`],
  ['Observation', 'status=final&code=1234-5'],
  ['Observation', 'subject=Patient/p1'],
  ['Observation', 'subject=p2'],
  ['Observation', 'patient=p1'],
  ['Observation', 'subject:Patient=p1'],
  ['Observation', 'subject=http://elsewhere.example/Patient/9'],
  ['Observation', 'subject=http://tributary.test/fhir/r4/Patient/p1'],
  ['Observation', 'subject:not=Patient/p1'],
  ['Observation', 'date=2024-03-05'],
  ['Observation', 'date=2024'],
  ['Observation', 'date=gt2024-01-15'],
  ['Observation', 'date=lt2024-01-15'],
  ['Observation', 'date=ge2024-03'],
  ['Observation', 'date=le2023-12-31'],
  ['Observation', 'date=sa2023-12-31'],
  ['Observation', 'date=eb2024-03-01'],
  ['Observation', 'date=ne2024-03-05'],
  ['Observation', '_id=o1,o3'],
  ['Patient', 'name=str'],
  ['Patient', 'name=STRÖM'],
  ['Patient', 'name:exact=Ström'],
  ['Patient', 'name:exact=ström'],
  ['Patient', 'family:contains=ran'],
  ['Patient', 'birthdate=1985'],
  ['Patient', 'birthdate=ap1970-05-03'],
  ['Patient', 'gender=female'],
  ['ValueSet', 'url=http://example.org/vs/1'],
];

t.before(async () => {
  await app.fhir.transaction(async (c) => {
    for (const r of corpus) {
      await app.fhir.repo.write(c, ctx, [
        { type: r.resourceType, id: r.id!, existing: null, resource: r, indexes: app.fhir.indexer.extract(r, null) },
      ]);
    }
  });
});

for (const [type, query] of CRITERIA) {
  t.test(`${type}?${query}: in memory as in SQL`, async (t) => {
    const pairs = [...new URLSearchParams(query)];
    const compiled = compileCriteria(app.fhir.params, type, pairs, [ctx.baseUrl]);
    t.same(compiled.deferred, [], 'evaluated in memory');
    const inMemory = corpus
      .filter((r) => r.resourceType === type)
      .filter((r) => compiled.tests.every((test) => test({ id: r.id!, indexes: app.fhir.indexer.extract(r, null) })))
      .map((r) => r.id)
      .sort();
    const inSql = (await app.fhir.search.match(app.pg, ctx, type, new URLSearchParams(query), 100)).map((m) => m.id).sort();
    t.same(inMemory, inSql, `matches ${JSON.stringify(inSql)}`);
  });
}

t.test('what the rows cannot tell is left to SQL; what is no criterion is refused', async (t) => {
  const deferred = (q: string) => compileCriteria(app.fhir.params, 'Observation', [...new URLSearchParams(q)], []).deferred.map(([k]) => k);
  t.same(deferred('subject.name=x'), ['subject.name'], 'a chain');
  t.same(deferred('_has:Observation:part-of:status=final'), ['_has:Observation:part-of:status']);
  t.same(deferred('code:in=http://example.org/vs'), ['code:in']);
  t.same(deferred('value-quantity=5'), ['value-quantity'], 'quantity');
  t.same(deferred('_tag=x|y'), ['_tag'], 'tags are not in the index rows');
  t.same(deferred('code=1234-5&subject:missing=true'), ['subject:missing'], 'only the part that needs it');
  t.throws(() => compileCriteria(app.fhir.params, 'Observation', [['nope', '1']], []), /no search parameter "nope"/);
  t.throws(() => compileCriteria(app.fhir.params, 'Observation', [['_count', '1']], []), /no criterion/);
  t.throws(() => compileCriteria(app.fhir.params, 'Observation', [['code', 'a|b|c']], []), /more than one/);
});

t.test('index keys: a plain token or _id files the subscription; other criteria do not', async (t) => {
  const keys = (q: string) => compileCriteria(app.fhir.params, 'Observation', [...new URLSearchParams(q)], []).keys.length;
  t.equal(keys(`code=${LOINC}|1234-5`), 1);
  t.equal(keys('code=a,b'), 2);
  t.equal(keys(`code=${LOINC}|`), 0, 'a system alone names no code');
  t.equal(keys('code:not=a'), 0);
  t.equal(keys('status=final&_id=x'), 1);
  t.equal(keys('subject=Patient/1'), 0);
});
