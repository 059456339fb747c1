/**
 * The sandbox record generator: deterministic, valid against the validator (R4 and the US Core profiles
 * it claims), referentially closed, complete in the resource types a US Core record has, with the shared
 * person the same human at every system, and big and fast enough.
 */
import path from 'node:path';
import t from 'tap';
import type { Condition, Observation, Patient, Resource } from '@medplum/fhirtypes';
import { createValidator } from '../../../src/fhir/validation/index.ts';
import { generateSystem, STEPS_LOINC, type GeneratedSystem, type GenerateOptions } from '../../../src/sandbox/generate.ts';

const validator = await createValidator({ profilesDir: path.join(import.meta.dirname, '../../../profiles') });

const OPTIONS: GenerateOptions = { seed: 'sierra', patients: 20, idPrefix: 'nv', systemName: 'Sierra Nevada Health' };
const system = generateSystem(OPTIONS);

const everyResource = (s: GeneratedSystem): Resource[] => [...s.shared, ...s.patients.flatMap((p) => p.resources)];
const key = (r: Resource): string => `${r.resourceType}/${r.id}`;
const codes = (r: Resource): string[] => ((r as Observation).code?.coding ?? []).map((c) => c.code ?? '');

/** Every value of every `reference` element in a resource, at any depth. */
function references(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const item of node) references(item, out);
  else if (node && typeof node === 'object') {
    for (const [name, value] of Object.entries(node)) {
      if (name === 'reference' && typeof value === 'string') out.push(value);
      else references(value, out);
    }
  }
  return out;
}

/** Every string in a resource that starts like a FHIR date. */
function dates(node: unknown, out: string[] = []): string[] {
  if (typeof node === 'string' && /^\d{4}-\d{2}-\d{2}/.test(node)) out.push(node);
  else if (node && typeof node === 'object') for (const value of Object.values(node)) dates(value, out);
  return out;
}

t.test('the same options give the same records; another seed gives others', async (t) => {
  const again = generateSystem(OPTIONS);
  t.same(again, system);
  t.equal(JSON.stringify(again), JSON.stringify(system));
  const other = generateSystem({ ...OPTIONS, seed: 'other' });
  t.not(JSON.stringify(other), JSON.stringify(system));
  t.not(other.patients[1].username, system.patients[1].username, 'another seed, other people');
});

t.test('every resource validates against R4 and the US Core profiles it claims', async (t) => {
  const failures: string[] = [];
  const resources = everyResource(system);
  for (const resource of resources) {
    for (const issue of validator.validate(resource)) {
      if (issue.severity === 'error' || issue.severity === 'fatal') failures.push(`${key(resource)}: ${issue.diagnostics} at ${issue.expression}`);
    }
  }
  t.same(failures.slice(0, 20), [], `${failures.length} issues in ${resources.length} resources`);
  t.equal(failures.length, 0);
  const claims = new Set(resources.flatMap((r) => r.meta?.profile ?? []));
  for (const profile of ['us-core-patient', 'us-core-blood-pressure', 'us-core-medicationrequest']) {
    t.ok(claims.has(`http://hl7.org/fhir/us/core/StructureDefinition/${profile}`), `some resource claims ${profile}`);
  }
});

t.test('ids are valid and unique, references resolve within the system, each record is its patient’s', async (t) => {
  const resources = everyResource(system);
  const ids = new Set(resources.map(key));
  t.equal(ids.size, resources.length, 'no two resources share type and id');
  t.same(resources.filter((r) => !/^[A-Za-z0-9\-.]{1,64}$/.test(r.id ?? '')).map(key), [], 'ids match [A-Za-z0-9-.]{1,64}');
  t.ok(
    resources.every((r) => r.id?.startsWith('nv-')),
    'ids carry the prefix',
  );

  const dangling = resources.flatMap((r) =>
    references(r)
      .filter((ref) => !ids.has(ref))
      .map((ref) => `${key(r)} → ${ref}`),
  );
  t.same(dangling, [], 'every reference points at a resource of the system');

  for (const patient of system.patients) {
    const [first, ...rest] = patient.resources;
    t.equal(first.resourceType, 'Patient', `${patient.personKey}: the Patient first`);
    const subject = key(first);
    const foreign = rest.filter((r) => {
      const owner = r as { subject?: { reference?: string }; patient?: { reference?: string } };
      return (owner.subject ?? owner.patient)?.reference !== subject;
    });
    t.same(foreign.map(key), [], `${patient.personKey}: every resource is about ${subject}`);
  }
  t.same(system.shared.map((r) => r.resourceType).sort(), ['Location', 'Location', 'Organization', ...Array(6).fill('Practitioner')]);
});

t.test('logins: unique usernames of lowercase letters, passwords of at least 8 characters', async (t) => {
  const usernames = system.patients.map((p) => p.username);
  t.equal(new Set(usernames).size, usernames.length);
  t.ok(
    usernames.every((u) => /^[a-z]+$/.test(u)),
    usernames.join(' '),
  );
  t.ok(system.patients.every((p) => p.password.length >= 8));
  t.same(
    system.patients.map((p) => p.personKey),
    ['shared', ...Array.from({ length: 20 }, (_, i) => `nv-${i + 1}`)],
  );
  t.equal(generateSystem({ ...OPTIONS, patients: 2, sharedPerson: false }).patients.length, 2);
});

t.test('the record has every US Core type, daily steps, and blood pressure with both components', async (t) => {
  const resources = everyResource(system);
  const types = new Set<string>(resources.map((r) => r.resourceType));
  for (const type of [
    'Organization',
    'Practitioner',
    'Location',
    'Patient',
    'Encounter',
    'Observation',
    'DiagnosticReport',
    'Condition',
    'MedicationRequest',
    'AllergyIntolerance',
    'Immunization',
    'Procedure',
    'DocumentReference',
  ]) {
    t.ok(types.has(type), type);
  }
  const categories = new Set(resources.flatMap((r) => ((r as Observation).category ?? []).flatMap((c) => c.coding?.map((x) => x.code) ?? [])));
  for (const category of ['vital-signs', 'laboratory', 'activity', 'problem-list-item', 'encounter-diagnosis', 'LAB', 'clinical-note']) {
    t.ok(categories.has(category), `category ${category}`);
  }
  const loinc = new Set(resources.flatMap(codes));
  for (const code of [
    '8867-4',
    '9279-1',
    '8310-5',
    '8302-2',
    '29463-7',
    '39156-5',
    '59408-5',
    '2339-0',
    '4548-4',
    '2093-3',
    '18262-6',
    '2085-9',
    '2571-8',
    '2160-0',
    '718-7',
    '6690-2',
    '57698-3',
    '58410-2',
    '51990-0',
  ]) {
    t.ok(loinc.has(code), `code ${code}`);
  }

  for (const patient of system.patients) {
    const steps = patient.resources.filter((r) => codes(r).includes(STEPS_LOINC)) as Observation[];
    t.equal(steps.length, 30, `${patient.personKey}: 30 days of steps`);
    t.ok(steps.every((s) => s.valueQuantity?.code === '{steps}' && s.effectiveDateTime?.startsWith('2025-12')));
  }

  const bp = resources.filter((r) => codes(r).includes('85354-9')) as Observation[];
  t.ok(bp.length > 0);
  t.ok(
    bp.every((o) => {
      const parts = (o.component ?? []).flatMap((c) => c.code.coding?.map((x) => x.code) ?? []);
      return parts.includes('8480-6') && parts.includes('8462-4') && o.component?.every((c) => c.valueQuantity?.unit === 'mm[Hg]');
    }),
    'systolic and diastolic in mm[Hg]',
  );

  const flagged = resources.filter((r) => (r as Observation).interpretation?.length);
  t.ok(flagged.length > 0, 'some lab results are flagged out of range');

  const late = resources.flatMap((r) =>
    dates(r)
      .filter((d) => d >= '2026-01-01')
      .map((d) => `${key(r)}: ${d}`),
  );
  t.same(late, [], 'every date is before the anchor, 2026-01-01');
});

t.test('the shared person is the same human at two systems, under each system’s ids', async (t) => {
  const other = generateSystem({ seed: 'desert', patients: 3, idPrefix: 'az', systemName: 'Desert Valley Medical', years: 3 });
  const here = system.patients.find((p) => p.personKey === 'shared');
  const there = other.patients.find((p) => p.personKey === 'shared');
  if (!here || !there) return t.fail('both systems have the shared person');
  t.equal(here.username, there.username);
  const a = here.resources[0] as Patient;
  const b = there.resources[0] as Patient;
  for (const field of ['name', 'birthDate', 'gender', 'address', 'telecom', 'extension'] as const) t.same(a[field], b[field], field);
  t.not(a.id, b.id);
  t.not(a.identifier?.[0].system, b.identifier?.[0].system);
  t.not(a.identifier?.[0].value, b.identifier?.[0].value, 'each system its own MRN');

  const hypertension = (p: typeof here): Condition | undefined =>
    p.resources.find((r) => r.resourceType === 'Condition' && codes(r).includes('38341003')) as Condition | undefined;
  t.ok(hypertension(here)?.onsetDateTime);
  t.equal(hypertension(here)?.onsetDateTime, hypertension(there)?.onsetDateTime, 'hypertension since the same day');
  const fluDates = (p: typeof here): string[] =>
    p.resources.flatMap((r) => (r.resourceType === 'Immunization' && r.vaccineCode.coding?.[0].code === '140' ? [r.occurrenceDateTime ?? ''] : []));
  t.ok(
    fluDates(here).some((d) => fluDates(there).includes(d)),
    'an influenza shot on the same day',
  );
  t.not(JSON.stringify(here.resources.slice(1)), JSON.stringify(there.resources.slice(1)), 'the rest of the record is each system’s');
});

t.test('size: about 50 resources a year; 20 years make a benchmark record of about 1,000', async (t) => {
  const sizes = system.patients.map((p) => p.resources.length);
  const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length;
  t.comment(`5 years: ${Math.round(mean)} resources per patient on average (${Math.min(...sizes)}–${Math.max(...sizes)})`);
  t.ok(mean > 150 && mean < 450, 'a plausible record for 5 years');

  const big = generateSystem({ ...OPTIONS, patients: 1, sharedPerson: false, years: 20 });
  const count = big.patients[0].resources.length;
  t.comment(`20 years: ${count} resources`);
  t.ok(count >= 700 && count <= 1500, `${count} within 700–1,500`);
});

t.test('speed: 20 patients in well under a second', async (t) => {
  const started = performance.now();
  generateSystem({ ...OPTIONS, seed: 'speed' });
  const ms = performance.now() - started;
  t.comment(`20 patients (${system.patients.length} with the shared person), default options: ${ms.toFixed(0)} ms`);
  t.ok(ms < 2000);
});
