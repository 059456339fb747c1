/**
 * MEDITECH's rules (src/sandbox/vendors/meditech.ts, ehr-behaviour.md §4): $everything's _since
 * ignored, start/end filtering by care date, _lastUpdated dropped from searches.
 */
import t from 'tap';
import type { Resource } from '@medplum/fhirtypes';
import { inCareWindow, meditechEverything, meditechSearch } from '../../../src/sandbox/vendors/meditech.ts';

t.test('_since ignored, start and end kept apart, bad dates refused', async (t) => {
  const e = meditechEverything(new URLSearchParams('_since=2025-01-01T00:00:00Z&start=2024&end=2024-06-30&_count=50'));
  t.same('params' in e ? [[...e.params], e.start, e.end] : e, [[['_count', '50']], '2024', '2024-06-30']);
  t.ok('refused' in meditechEverything(new URLSearchParams('start=yesterday')));
  t.same([...meditechSearch(new URLSearchParams('patient=p&_lastUpdated=gt2025&_LASTUPDATED=x'))], [['patient', 'p']]);
});

t.test('care window', async (t) => {
  const obs = { resourceType: 'Observation', effectiveDateTime: '2024-03-05T10:00:00Z' } as Resource;
  t.ok(inCareWindow(obs, '2024', '2024'));
  t.ok(inCareWindow(obs, '2024-03-05', '2024-03-05'));
  t.notOk(inCareWindow(obs, '2024-04'));
  t.notOk(inCareWindow(obs, undefined, '2023-12-31'));
  t.ok(inCareWindow({ resourceType: 'Patient' } as Resource, '2030'), 'no care date: always in');
});
