/**
 * athena's rules (src/sandbox/vendors/athena.ts, ehr-behaviour.md §3): MedicationRequest needs
 * intent (403 forbidden), _lastUpdated ignored, meta.lastUpdated on about half, the practice tag.
 */
import t from 'tap';
import type { Resource } from '@medplum/fhirtypes';
import { athenaRateHeaders, athenaResource, athenaSearch, ATHENA_SYSTEM } from '../../../src/sandbox/vendors/athena.ts';
import { generateSystem } from '../../../src/sandbox/generate.ts';

t.test('MedicationRequest without intent: 403 forbidden with athena words; with it, or _id, passed on', async (t) => {
  const r = athenaSearch('MedicationRequest', new URLSearchParams('patient=a-80000.E-pat-1'));
  t.ok('refused' in r);
  if ('refused' in r)
    t.match(r.refused, {
      status: 403,
      body: { issue: [{ code: 'forbidden', diagnostics: 'one of the required parameter combinations [[patient,intent],[_id]] was not provided' }] },
    });
  t.ok('params' in athenaSearch('MedicationRequest', new URLSearchParams('patient=p&intent=order')));
  t.ok('params' in athenaSearch('MedicationRequest', new URLSearchParams('_id=x')));
  t.ok('params' in athenaSearch('Observation', new URLSearchParams('patient=p')), 'Observation with patient alone works');
});

t.test('_lastUpdated and _since dropped (any case)', async (t) => {
  const r = athenaSearch(
    'Observation',
    new URLSearchParams('patient=p&_lastUpdated=gt2025-01-01&_lastupdated=gt2025&_since=2025&category=laboratory'),
  );
  t.same('params' in r ? [...r.params] : [], [
    ['patient', 'p'],
    ['category', 'laboratory'],
  ]);
});

t.test('resources: ids of the practice, meta.lastUpdated on about half, the ah-practice extension', async (t) => {
  const gen = generateSystem({
    seed: ATHENA_SYSTEM.seed,
    patients: 1,
    idPrefix: ATHENA_SYSTEM.idPrefix,
    systemName: ATHENA_SYSTEM.title,
    years: 3,
    ...ATHENA_SYSTEM.generate,
  });
  const stored = gen.patients
    .flatMap((p) => p.resources)
    .map((r) => ({ ...r, meta: { ...r.meta, versionId: '1', lastUpdated: '2026-01-02T00:00:00Z' } }) as Resource);
  const served = stored.map((r) => athenaResource(r));
  const kept = served.filter((r) => r.meta?.lastUpdated).length;
  t.ok(kept / served.length > 0.35 && kept / served.length < 0.65, `${kept} of ${served.length} keep meta.lastUpdated`);
  t.ok(served.every((r) => r.id!.startsWith('a-80000.E-')));
  t.ok(served.every((r) => JSON.stringify(r).includes('ah-practice')));
  t.same(stored[0].meta?.lastUpdated, '2026-01-02T00:00:00Z', 'the input is not changed');
  t.equal(JSON.stringify(served.map((r) => athenaResource(r))), JSON.stringify(served), 'the same every time');
  const eie = gen.patients[0].resources.filter(
    (r) => r.resourceType === 'Observation' && (r as { status: string }).status === 'entered-in-error',
  ).length;
  t.ok(eie > 0, `${eie} Observations entered-in-error`);
  t.same(athenaRateHeaders(10), { 'X-Ratelimit-Limit': '100000', 'X-Ratelimit-Remaining': '99990' });
});
