/**
 * The payer's records (src/sandbox/payer.ts): per beneficiary a Patient, Part A, B and D Coverages
 * and carrier, outpatient and PDE ExplanationOfBenefits, valid R4, closed (every literal reference
 * inside the beneficiary's records), deterministic, with the clinical system's sign-ins.
 */
import path from 'node:path';
import t from 'tap';
import type { ExplanationOfBenefit, Resource } from '@medplum/fhirtypes';
import { createValidator } from '../../../src/fhir/validation/index.ts';
import { generateSystem, type GenerateOptions } from '../../../src/sandbox/generate.ts';
import { generatePayerSystem } from '../../../src/sandbox/payer.ts';

const validator = await createValidator({ profilesDir: path.join(import.meta.dirname, '../../../profiles') });
const OPTS: GenerateOptions = { seed: 'bluebutton', patients: 3, idPrefix: 'bb', systemName: 'Medicare', years: 3 };
const payer = generatePayerSystem(OPTS);

t.test('the same people and sign-ins as the clinical records of the seed', async (t) => {
  const clinical = generateSystem(OPTS);
  t.same(
    payer.patients.map((p) => [p.username, p.password]),
    clinical.patients.map((p) => [p.username, p.password]),
  );
  t.same(payer.shared, []);
  t.equal(JSON.stringify(generatePayerSystem(OPTS)), JSON.stringify(payer), 'deterministic');
});

t.test('per beneficiary: a Patient first, three Coverages, claims of three kinds', async (t) => {
  const kinds = new Set<string>();
  for (const p of payer.patients) {
    const [patient, ...rest] = p.resources;
    t.equal(patient.resourceType, 'Patient');
    t.match(patient.id, /^-2014\d{10}$/);
    t.same(
      rest.filter((r) => r.resourceType === 'Coverage').map((r) => r.id),
      ['A', 'B', 'D'].map((x) => `part-${x.toLowerCase()}-${patient.id}`),
    );
    const eobs = rest.filter((r): r is ExplanationOfBenefit => r.resourceType === 'ExplanationOfBenefit');
    t.ok(eobs.length > 3, `${p.username}: ${eobs.length} claims`);
    for (const e of eobs) kinds.add(e.type.coding![0].code!);
    t.same(
      rest.filter((r) => !['Coverage', 'ExplanationOfBenefit'].includes(r.resourceType)),
      [],
      'nothing else',
    );
    const ids = new Set(p.resources.map((r) => `${r.resourceType}/${r.id}`));
    const refs = JSON.stringify(p.resources)
      .match(/"reference":"[^"]+"/g)!
      .map((m) => m.slice(13, -1));
    t.same(
      refs.filter((r) => !ids.has(r)),
      [],
      'every reference inside the beneficiary',
    );
  }
  t.same([...kinds].sort(), ['CARRIER', 'OUTPATIENT', 'PDE']);
});

t.test('every resource validates against R4', async (t) => {
  const all: Resource[] = payer.patients.flatMap((p) => p.resources);
  const failures = all.flatMap((r) =>
    validator
      .validate(r)
      .filter((i) => i.severity === 'error' || i.severity === 'fatal')
      .map((i) => `${r.resourceType}/${r.id}: ${i.diagnostics} at ${i.expression}`),
  );
  t.same(failures.slice(0, 10), [], `${failures.length} issues in ${all.length} resources`);
});
