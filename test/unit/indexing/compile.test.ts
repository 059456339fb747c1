/** The compiled evaluators on the shapes they handle, against @medplum/core on the same input. */
import { evalFhirPathTyped, toTypedValue } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import t from 'tap';
import { compileExpression } from '../../../src/indexing/compile.ts';
import { loadFhirDefinitions } from '../../../src/indexing/definitions.ts';
import { typeAndValue } from './differential.ts';

loadFhirDefinitions();

function both(expression: string, resource: Resource) {
  const compiled = compileExpression(expression);
  const root = toTypedValue(resource);
  return { compiled, actual: typeAndValue(compiled.evaluate(root)), expected: typeAndValue(evalFhirPathTyped(expression, [toTypedValue(resource)])) };
}

const obs: Resource = {
  resourceType: 'Observation',
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '1' }] },
  subject: { reference: 'Patient/1' },
  valueQuantity: { value: 5, unit: 'kg' },
  component: [
    { code: { text: 'a' }, valueString: 'x' },
    { code: { text: 'b' }, valueQuantity: { value: 1 } },
  ],
};

t.test('choice types take their type from the property suffix', async (t) => {
  const { compiled, actual, expected } = both('Observation.value', obs);
  t.ok(compiled.compiled);
  t.same(actual, [{ type: 'Quantity', value: { value: 5, unit: 'kg' } }]);
  t.same(actual, expected);
  t.same(
    both('Observation.component.value', obs).actual.map((v) => v.type),
    ['string', 'Quantity'],
  );
});

t.test('as, ofType, and the function form .as() (one item at most, as in @medplum/core 5)', async (t) => {
  for (const e of [
    '(Observation.value as Quantity)',
    'Observation.value as string',
    'Observation.value.as(Quantity)',
    'Observation.component.value.ofType(Quantity)',
  ]) {
    const { compiled, actual, expected } = both(e, obs);
    t.ok(compiled.compiled, e);
    t.same(actual, expected, e);
  }
  for (const e of ['Observation.component.value.as(Quantity)', 'Observation.component.value as Quantity']) {
    const compiled = compileExpression(e);
    t.ok(compiled.compiled, e);
    t.throws(() => compiled.evaluate(toTypedValue(obs)), /Expected singleton/, `${e}: two items are an error`);
    t.throws(() => evalFhirPathTyped(e, [toTypedValue(obs)]), /Expected singleton/, `${e}: in @medplum/core too`);
  }
  t.equal(both('Observation.component.value.ofType(Quantity)', obs).actual.length, 1);
});

t.test('where(resolve() is T), equality filters, exists(), extension()', async (t) => {
  const p: Resource = {
    resourceType: 'Patient',
    telecom: [
      { system: 'phone', value: '1' },
      { system: 'email', value: 'e' },
    ],
    extension: [
      { url: 'http://e.org/a', valueCode: 'x' },
      { url: 'http://e.org/a', valueCode: 'y' },
    ],
    deceasedBoolean: false,
  };
  for (const [e, r, n] of [
    ['Observation.subject.where(resolve() is Patient)', obs, 1],
    ['Observation.subject.where(resolve() is Group)', obs, 0],
    ["Patient.telecom.where(system='phone')", p, 1],
    ["Patient.extension('http://e.org/a').value", p, 1],
    ["Patient.extension.where(url = 'http://e.org/a').value", p, 2],
    ['Patient.deceased.exists() and Patient.deceased != false', p, 1],
    ['Patient.telecom[1].value', p, 1],
  ] as const) {
    const { compiled, actual, expected } = both(e, r);
    t.ok(compiled.compiled, e);
    t.equal(actual.length, n, e);
    t.same(actual, expected, e);
  }
});

t.test('primitive extensions come back as @medplum/core returns them', async (t) => {
  const p = {
    resourceType: 'Patient',
    name: [{ given: ['A', 'B'], _given: [null, { id: 'g2' }] }],
    _birthDate: { extension: [{ url: 'u' }] },
  } as unknown as Resource;
  for (const e of ['Patient.name.given', 'Patient.birthDate']) {
    const { actual, expected } = both(e, p);
    t.same(actual, expected, e);
  }
});

t.test('unions remove duplicates as FHIRPath does', async (t) => {
  const p: Resource = { resourceType: 'Patient', name: [{ given: ['A', 'B'] }, { given: ['A'], family: 'A' }] };
  const { actual, expected } = both('Patient.name.given | Patient.name.family', p);
  t.same(
    actual.map((v) => v.value),
    ['A', 'B'],
  );
  t.same(actual, expected);
});

t.test('shapes it does not compile fall back to @medplum/core', async (t) => {
  const p: Resource = { resourceType: 'Patient', name: [{ given: ['A', 'B'] }] };
  for (const e of ['Patient.name.given.count()', "Patient.name.given.select($this & 'x')", 'Patient.name.given.first().length()']) {
    const { compiled, actual, expected } = both(e, p);
    t.equal(compiled.compiled, false, e);
    t.same(actual, expected, e);
  }
});
