import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { OperationOutcomeIssue, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { createValidator, R4_RESOURCE_TYPES } from '../../../src/fhir/validation/index.ts';
import { locationSteps, pointerToFhirPath, resolveChoiceSteps } from '../../../src/fhir/validation/fhirpath-location.ts';
import { validateWithDefinitions } from '../../../src/fhir/validation/definitions-layer.ts';
import { loadProfiles } from '../../../src/fhir/validation/profiles.ts';
import { loadRepairedSchema } from '../../../src/fhir/validation/schema-repairs.ts';
import { definitionsFile } from '../../../src/fhir/r4-definitions.ts';

const root = join(import.meta.dirname, '../../..');
const profilesDir = join(root, 'profiles');
const validator = await createValidator({ profilesDir });
const US_CORE_PATIENT = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient';

const where = (issues: OperationOutcomeIssue[]): string[] => issues.flatMap((i) => i.expression ?? []);
const byPlace = (issues: OperationOutcomeIssue[], expression: string): OperationOutcomeIssue | undefined =>
  issues.find((i) => i.expression?.includes(expression));

const patient = {
  resourceType: 'Patient',
  id: 'p-1.a',
  active: true,
  name: [{ family: 'Chalmers', given: ['Peter', 'James'] }],
  gender: 'male',
  birthDate: '1974-12-25',
};

t.test('a valid Patient has no issue', async (t) => {
  t.same(validator.validate(patient), []);
});

t.test('an unknown element is named by its FHIRPath location', async (t) => {
  const issues = validator.validate({ ...patient, name: [{ family: 'X', nickname: 'Pete' }] });
  t.equal(issues.length, 1);
  t.same(issues[0].expression, ['Patient.name[0].nickname']);
  t.equal(issues[0].severity, 'error');
  t.equal(issues[0].code, 'structure');
  t.match(issues[0].diagnostics, /Unknown element "nickname"/);
});

t.test('a string where a boolean belongs is a structure error', async (t) => {
  const issues = validator.validate({ ...patient, active: 'true' });
  t.same(where(issues), ['Patient.active']);
  t.equal(issues[0].code, 'structure');
  t.match(issues[0].diagnostics, /boolean.*found a string "true"/);
});

t.test('missing required elements are reported as required', async (t) => {
  const issues = validator.validate({ resourceType: 'Observation', subject: { reference: 'Patient/1' } });
  t.same(where(issues).sort(), ['Observation.code', 'Observation.status']);
  t.ok(issues.every((i) => i.code === 'required'));
});

t.test('a code outside a required binding is code-invalid', async (t) => {
  const issues = validator.validate({ ...patient, gender: 'robot' });
  t.same(where(issues), ['Patient.gender']);
  t.equal(issues[0].code, 'code-invalid');
  t.match(issues[0].diagnostics, /"robot".*male, female, other, unknown/);
});

t.test('several errors are all reported, from both layers', async (t) => {
  const issues = validator.validate({
    resourceType: 'Observation',
    foo: 1,
    status: 'done',
    code: { text: 'weight' },
    valueQuantity: { value: '70' },
    effectiveDateTime: '2020-13-01',
    note: [{ text: 'a' }, { text: 5 }],
    component: [{ valueString: 'no code' }],
  });
  t.same(where(issues).sort(), [
    'Observation.component[0].code', // missing, from the StructureDefinition
    'Observation.effectiveDateTime',
    'Observation.foo',
    'Observation.note[1].text',
    'Observation.status',
    'Observation.valueQuantity.value',
  ]);
  t.equal(byPlace(issues, 'Observation.component[0].code')?.code, 'required');
  t.equal(byPlace(issues, 'Observation.effectiveDateTime')?.code, 'value');
  t.equal(byPlace(issues, 'Observation.status')?.code, 'code-invalid');
});

t.test('contained resources are validated with their own type', async (t) => {
  const observation = { resourceType: 'Observation', id: 'o1', status: 'final', code: { text: 'x' } };
  t.same(validator.validate({ ...patient, contained: [observation] }), []);

  const issues = validator.validate({
    ...patient,
    contained: [
      { ...observation, bar: 2 },
      { resourceType: 'Observation', id: 'o2' },
    ],
  });
  t.same(where(issues).sort(), ['Patient.contained[0].bar', 'Patient.contained[1].code', 'Patient.contained[1].status']);

  const unknown = validator.validate({ ...patient, contained: [{ resourceType: 'Nope' }, 'text'] });
  t.same(where(unknown), ['Patient.contained[0].resourceType', 'Patient.contained[1]']);
  t.match(unknown[0].diagnostics, /Unknown resource type "Nope"/);
  t.match(unknown[1].diagnostics, /Expected Resource \(a JSON object\), found a string "text"/);
});

t.test('Bundle entries are validated, located under the entry', async (t) => {
  const bundle = {
    resourceType: 'Bundle',
    type: 'collection',
    entry: [
      { fullUrl: 'urn:uuid:1', resource: patient },
      { fullUrl: 'urn:uuid:2', resource: { ...patient, active: 1 } },
    ],
  };
  t.same(where(validator.validate(bundle)), ['Bundle.entry[1].resource.active']);
  t.same(validator.validate({ ...bundle, entry: [bundle.entry[0]] }), []);
});

t.test('a body that is not a resource of a known R4 type is refused', async (t) => {
  for (const body of [null, [], 'Patient', 42]) {
    const issues = validator.validate(body);
    t.equal(issues.length, 1);
    t.equal(issues[0].severity, 'error');
    t.match(issues[0].diagnostics, /must be a JSON object/);
  }
  t.equal(validator.validate({ name: [] })[0].code, 'required');
  t.match(validator.validate({ resourceType: 'Nope' })[0].diagnostics, /Unknown resource type "Nope"/);
  // Medplum's own types are in its schema and definitions, but not in R4.
  t.match(validator.validate({ resourceType: 'Project', name: 'x' })[0].diagnostics, /not a FHIR R4 resource type/);
  t.match(validator.validate({ resourceType: 'SubscriptionStatus' })[0].diagnostics, /not a FHIR R4 resource type/);
});

t.test('ids must match [A-Za-z0-9\\-\\.]{1,64}', async (t) => {
  t.same(validator.validate({ ...patient, id: 'A-z.09' }), []);
  t.same(validator.validate({ ...patient, id: 'x'.repeat(64) }), []);
  for (const id of ['a b', 'x'.repeat(65), '', 'a_b', 'ü']) {
    const issues = validator.validate({ ...patient, id });
    t.same(where(issues), ['Patient.id'], `id ${JSON.stringify(id)}`);
    t.equal(issues[0].code, 'value');
  }
  t.same(where(validator.validate({ ...patient, id: 7 })), ['Patient.id']);
  const contained = { resourceType: 'Organization', id: 'bad id', name: 'x' };
  t.same(where(validator.validate({ ...patient, contained: [contained] })), ['Patient.contained[0].id']);
});

t.test('primitive extensions and choice elements are located as FHIRPath', async (t) => {
  const issues = validator.validate({ ...patient, name: [{ given: ['a'], _given: [{ extension: [{ valueString: 'x' }] }] }] });
  // Extension.url is required; `_given[0]` is the same element as `given[0]` in FHIRPath.
  t.same(where(issues), ['Patient.name[0].given[0].extension[0].url']);

  // SampledData.period is a mandatory primitive, which only @medplum/core checks; it names value[x].
  const obs = { resourceType: 'Observation', status: 'final', code: { text: 'w' } };
  const sampled = { origin: { value: 0 }, dimensions: 1, data: '1 2' };
  t.same(validator.validate({ ...obs, valueSampledData: { ...sampled, period: 10 } }), []);
  const missing = validator.validate({ ...obs, component: [{ code: { text: 'c' }, valueSampledData: sampled }] });
  t.same(where(missing), ['Observation.component[0].valueSampledData.period']);
  t.equal(missing[0].code, 'required');
});

t.test('a choice element holds one type only', async (t) => {
  const obs = { resourceType: 'Observation', status: 'final', code: { text: 'w' } };
  const issues = validator.validate({ ...obs, component: [{ code: { text: 'c' }, valueString: 'a', valueBoolean: true }] });
  t.equal(issues.length, 1);
  t.equal(issues[0].code, 'structure');
  t.match(issues[0].expression?.[0], /^Observation\.component\[0\]\.value(String|Boolean)$/);
  t.match(issues[0].diagnostics, /Only one of "value(String|Boolean)" and "value(String|Boolean)"/);
  t.same(validator.validate({ ...obs, valueString: 'a', _valueString: { id: 'x' } }), []);
});

t.test('valid content that a naive check refuses is accepted', async (t) => {
  // U+00A0 is not whitespace in the specification's patterns (XML Schema's \s).
  t.same(validator.validate({ ...patient, name: [{ family: '\u00a0Seul', given: ['A\u00a0B'] }] }), []);
  t.same(validator.validate({ ...patient, language: 'en\u00a0' }), []);
  // Line-wrapped base64 is valid base64Binary.
  const attachment = { contentType: 'text/plain', data: 'SGVs\nbG8g\r\nd29y bGQ=' };
  t.same(validator.validate({ ...patient, photo: [attachment] }), []);
  t.same(where(validator.validate({ ...patient, photo: [{ data: 'SGVs*G8=' }] })), ['Patient.photo[0].data']);
  // Extensions of canonical elements, which the R4 JSON schema forgot.
  t.same(validator.validate({ ...patient, meta: { profile: ['http://x/y'], _profile: [{ id: 'p' }] } }), []);
  // A prediction without a decimal probability satisfies ras-2 (R4's expression says empty, not true).
  const risk = { resourceType: 'RiskAssessment', status: 'final', subject: { reference: 'Patient/1' } };
  t.same(
    validator.validate({ ...risk, prediction: [{ probabilityRange: { low: { value: 1, system: 'http://unitsofmeasure.org', code: '%' } } }] }),
    [],
  );
  t.same(validator.validate({ ...risk, prediction: [{ probabilityDecimal: 80 }] }), []);
  t.same(where(validator.validate({ ...risk, prediction: [{ probabilityDecimal: 180 }] })), ['RiskAssessment.prediction[0]']);
  // Control characters are still refused in strings.
  t.same(where(validator.validate({ ...patient, name: [{ family: 'a\u0001b' }] })), ['Patient.name[0].family']);
});

t.test('a US Core profile named in meta.profile is enforced', async (t) => {
  const claims = { resourceType: 'Patient', meta: { profile: [US_CORE_PATIENT] }, active: true };
  const issues = validator.validate(claims);
  for (const missing of ['Patient.identifier', 'Patient.name', 'Patient.gender']) {
    const issue = byPlace(issues, missing);
    t.equal(issue?.code, 'required', missing);
    t.match(issue?.diagnostics, /profile http:\/\/hl7.org\/fhir\/us\/core\/StructureDefinition\/us-core-patient\|5.0.1/);
  }
  // Without the claim, the same resource is a valid R4 Patient.
  t.same(validator.validate({ resourceType: 'Patient', active: true }), []);

  const conforming = {
    ...claims,
    identifier: [{ system: 'urn:oid:1.2.3', value: '12345' }],
    name: [{ family: 'Shaw', given: ['Amy'] }],
    gender: 'female',
  };
  t.same(validator.validate(conforming), []);
  // A versioned canonical names that version only; an unknown profile is not validated against (as HAPI).
  t.ok(validator.validate({ ...claims, meta: { profile: [`${US_CORE_PATIENT}|5.0.1`] } }).length >= 3);
  t.same(validator.validate({ ...claims, meta: { profile: [`${US_CORE_PATIENT}|9.9.9`] } }), []);
  t.same(validator.validate({ ...claims, meta: { profile: ['http://example.org/StructureDefinition/unknown'] } }), []);
  // A profile of another type cannot be claimed.
  const wrong = validator.validate({
    ...conforming,
    meta: { profile: ['http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure'] },
  });
  t.same(where(wrong), ['Patient.meta.profile[0]']);
  t.equal(wrong[0].code, 'invalid');
  t.ok(validator.profiles.includes(`${US_CORE_PATIENT}|5.0.1`));
});

t.test('the parsed-once profile gives what validateResource(resource, { profile }) gives', async (t) => {
  const bundle = JSON.parse(readFileSync(join(profilesDir, 'structure-definitions/us-core-5.0.1.json'), 'utf8')) as StructureDefinition[];
  const profiles = await loadProfiles(profilesDir);
  const reference = (resource: Resource, sd: StructureDefinition): string[] => {
    try {
      validateResource(resource, { profile: sd });
      return [];
    } catch (err) {
      if (!(err instanceof OperationOutcomeError)) throw err;
      return (err.outcome.issue ?? []).map((i) => `${i.expression?.[0]} ${i.details?.text}`).sort();
    }
  };
  const ours = (resource: Resource): string[] =>
    validateWithDefinitions(resource, profiles)
      .issues.map((i) => `${i.expression?.[0]} ${i.diagnostics?.replace(/ \(profile .*\)$/, '')}`)
      .sort();
  const bp = (components: unknown[]): Resource =>
    ({
      resourceType: 'Observation',
      meta: { profile: ['http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure'] },
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
      code: { coding: [{ system: 'http://loinc.org', code: '85354-9' }] },
      subject: { reference: 'Patient/1' },
      effectiveDateTime: '2020-01-01',
      component: components,
    }) as Resource;
  const systolic = {
    code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] },
    valueQuantity: { value: 120, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' },
  };
  const cases: [string, Resource][] = [
    ['us-core-patient', { resourceType: 'Patient', meta: { profile: [US_CORE_PATIENT] } } as Resource],
    [
      'us-core-patient',
      {
        resourceType: 'Patient',
        meta: { profile: [US_CORE_PATIENT] },
        identifier: [{ system: 's', value: 'v' }],
        name: [{ family: 'F' }],
        gender: 'male',
      } as Resource,
    ],
    [
      'us-core-patient',
      {
        resourceType: 'Patient',
        meta: { profile: [US_CORE_PATIENT] },
        identifier: [{ value: 'v' }],
        name: [{ text: 'x' }],
        gender: 'male',
        extension: [{ url: 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex', valueCode: 'M' }],
      } as Resource,
    ],
    ['us-core-blood-pressure', bp([systolic])],
    ['us-core-blood-pressure', bp([])],
  ];
  let failing = 0;
  for (const [id, resource] of cases) {
    const sd = bundle.find((s) => s.id === id) as StructureDefinition;
    const expected = reference(resource, sd);
    if (expected.length) failing++;
    // Ours also holds the base definition's findings; the profile's must all be there.
    const got = ours(resource);
    for (const e of expected) t.ok(got.includes(e), `${id}: ${e}`);
  }
  t.ok(failing >= 3, 'the cases include failures');
});

t.test('creating the validator again reuses what the process loaded', async (t) => {
  const started = performance.now();
  const again = await createValidator({ profilesDir });
  t.ok(performance.now() - started < 1000, 'no second indexing of the base definitions');
  t.same(again.validate(patient), []);
  t.ok(again.validate({ resourceType: 'Patient', meta: { profile: [US_CORE_PATIENT] } }).length >= 3);
  const none = await createValidator({ profilesDir: join(root, 'no-such-folder') });
  t.same(none.profiles, []);
});

t.test('the R4 resource types are those of the R4 definitions', async (t) => {
  const defs = JSON.parse(readFileSync(definitionsFile('fhir/r4/profiles-resources.json'), 'utf8')) as { entry: { resource: StructureDefinition }[] };
  const concrete = defs.entry
    .map((e) => e.resource)
    .filter((sd) => sd.resourceType === 'StructureDefinition' && sd.kind === 'resource' && !sd.abstract)
    .map((sd) => sd.type as string)
    .filter((type) => type !== 'SubscriptionStatus'); // R4B's, added by Medplum
  t.same([...R4_RESOURCE_TYPES].sort(), concrete.sort());
  t.equal(R4_RESOURCE_TYPES.size, 146);
});

t.test('locations as FHIRPath', async (t) => {
  t.equal(pointerToFhirPath('Patient', ''), 'Patient');
  t.equal(pointerToFhirPath('Patient', '/name/0/given/1'), 'Patient.name[0].given[1]');
  t.equal(pointerToFhirPath('Patient', '/name/0/_given/1/extension/0'), 'Patient.name[0].given[1].extension[0]');
  t.equal(pointerToFhirPath('Patient', '/a~1b/c d'), 'Patient.`a/b`.`c d`');
  t.same(locationSteps('Patient.`a/b`.name[0].given[1]'), ['Patient', 'a/b', 'name', 0, 'given', 1]);
  const obs = { resourceType: 'Observation', component: [{ valueString: 'x' }, { valueQuantity: { value: 1 } }] };
  t.equal(resolveChoiceSteps('Observation.component[1].value[x].value', obs), 'Observation.component[1].valueQuantity.value');
  t.equal(resolveChoiceSteps('Observation.value[x]', obs), 'Observation.value[x]');
  t.equal(resolveChoiceSteps('Observation.status', obs), 'Observation.status');
});

t.test('the repaired schema keeps no JavaScript-only whitespace class and no canonical without its _', async (t) => {
  const schema = loadRepairedSchema();
  const patterns: string[] = [];
  let canonicals = 0;
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== 'object') return;
    const object = node as Record<string, unknown>;
    if (typeof object.pattern === 'string') patterns.push(object.pattern);
    const properties = object.properties as Record<string, { $ref?: string; items?: { $ref?: string } }> | undefined;
    for (const [name, p] of Object.entries(properties ?? {})) {
      if ((p.$ref ?? p.items?.$ref) === '#/definitions/canonical') {
        canonicals++;
        t.ok(properties?.[`_${name}`], `_${name} is allowed`);
      }
    }
    Object.values(object).forEach(walk);
  };
  walk(schema.definitions);
  t.ok(patterns.length > 300);
  t.same(
    patterns.filter((p) => /\\[sS]/.test(p)),
    [],
  );
  t.ok(canonicals > 70);
  t.equal(schema.$id, 'http://hl7.org/fhir/json-schema/4.0');
});
