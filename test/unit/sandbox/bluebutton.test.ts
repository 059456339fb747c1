/**
 * Blue Button's rules (src/sandbox/vendors/bluebutton.ts, ehr-behaviour.md §9): three types,
 * Coverage by beneficiary, unknown parameters dropped, _count 10 by default and over 50 refused,
 * _lastUpdated only with lt/le/gt/ge, startIndex paging, CARIN BB's type and service-date.
 */
import t from 'tap';
import type { ExplanationOfBenefit } from '@medplum/fhirtypes';
import {
  bluebuttonPage,
  bluebuttonSearch,
  BLUEBUTTON_NOT_FOUND,
  matchesServiceDate,
  type BlueButtonQuery,
} from '../../../src/sandbox/vendors/bluebutton.ts';
import { generatePayerSystem } from '../../../src/sandbox/payer.ts';

const q = (type: string, query: string) => bluebuttonSearch(type, new URLSearchParams(query), '-20140000000001');
const ok = (type: string, query: string): BlueButtonQuery => {
  const r = q(type, query);
  if (!('query' in r)) throw new Error(JSON.stringify(r.refused));
  return r.query;
};
const refused = (type: string, query: string) => {
  const r = q(type, query);
  return 'refused' in r ? (r.refused as { status: number; body: { issue?: { code: string; diagnostics: string }[] } }) : undefined;
};

t.test('types and parameters', async (t) => {
  t.same(refused('Observation', 'patient=x'), BLUEBUTTON_NOT_FOUND, 'a type it does not serve: 404 as its web framework answers');
  t.same(
    ok('Coverage', 'patient=someone&beneficiary=Patient/other').internal.toString(),
    'beneficiary=Patient%2F-20140000000001',
    'the beneficiary injected; patient dropped',
  );
  t.same([...ok('Coverage', 'patient=x&_include=*&_since=2020').kept], [], 'unknown parameters dropped');
  t.same(ok('ExplanationOfBenefit', '_lastUpdated=gt2024-01-01&foo=1').internal.getAll('_lastUpdated'), ['gt2024-01-01']);
  t.equal(refused('ExplanationOfBenefit', '_lastUpdated=2024-01-01')?.status, 400, '_lastUpdated without a prefix: 400');
  t.equal(refused('ExplanationOfBenefit', '_lastUpdated=eq2024-01-01')?.status, 400, 'eq is not one of lt/le/gt/ge');
  t.equal(ok('Patient', '').internal.get('_id'), '-20140000000001');
  t.equal(ok('Patient', '_id=-20140000000009').internal.get('_id'), '-20140000000001-none', 'another _id finds nothing');
});

t.test('_count: 10 by default, up to 50, 51 refused; startIndex', async (t) => {
  t.equal(ok('Coverage', '').count, 10);
  t.equal(ok('Coverage', '_count=50').count, 50);
  const r = refused('Coverage', '_count=51');
  t.equal(r?.status, 400);
  t.equal(r?.body.issue?.[0].code, 'invalid');
  t.equal(refused('Coverage', '_count=abc')?.status, 400);
  t.equal(refused('Coverage', 'startIndex=-1')?.status, 400);
  t.equal(ok('Coverage', 'startIndex=20').startIndex, 20);
});

t.test('pages: startIndex links, filters by type and service-date', async (t) => {
  const records = generatePayerSystem({ seed: 'bluebutton', patients: 1, idPrefix: 'bb', systemName: 'Medicare', years: 3 }).patients[0].resources;
  const eobs = records.filter((r): r is ExplanationOfBenefit => r.resourceType === 'ExplanationOfBenefit');
  const url = 'http://x/sandbox/bluebutton/v2/fhir/ExplanationOfBenefit';
  const first = bluebuttonPage(eobs, ok('ExplanationOfBenefit', '_count=5&junk=1'), url);
  t.equal(first.total, eobs.length);
  t.equal(first.entry!.length, Math.min(5, eobs.length));
  const next = first.link!.find((l) => l.relation === 'next')!.url;
  t.match(next, /_count=5&startIndex=5$/);
  t.notMatch(next, /junk/);
  const second = bluebuttonPage(eobs, ok('ExplanationOfBenefit', new URL(next).search.slice(1)), url);
  t.same(
    second.entry!.map((e) => e.resource!.id),
    eobs.slice(5, 10).map((e) => e.id),
  );
  t.ok(second.link!.some((l) => l.relation === 'previous'));
  const pde = bluebuttonPage(eobs, ok('ExplanationOfBenefit', 'type=PDE&_count=50'), url);
  t.ok(pde.entry!.length > 0 && pde.entry!.every((e) => (e.resource as ExplanationOfBenefit).type.coding![0].code === 'PDE'));
  const some = eobs[0];
  t.ok(matchesServiceDate(some, `ge${some.billablePeriod!.start}`));
  t.notOk(matchesServiceDate(some, `lt${some.billablePeriod!.start}`));
  const dated = bluebuttonPage(eobs, ok('ExplanationOfBenefit', `service-date=${some.billablePeriod!.start}&_count=50`), url);
  t.ok(dated.entry!.some((e) => e.resource!.id === some.id));
});
