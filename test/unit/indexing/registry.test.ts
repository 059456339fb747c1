/** The registry: which parameters apply to a type, how expressions split, run-time additions. */
import type { SearchParameter } from '@medplum/fhirtypes';
import t from 'tap';
import { applicablePart, splitExpression } from '../../../src/indexing/expression-parts.ts';
import { createR4Registry, NOT_INDEXED_PARAMS } from '../../../src/indexing/registry.ts';

const registry = createR4Registry();
const codes = (type: string): string[] => registry.forType(type).map((p) => p.code);

// `base` is typed as concrete resource types, but Resource and DomainResource are valid bases.
const sp = (over: Omit<Partial<SearchParameter>, 'base'> & { base?: string[] }): SearchParameter =>
  ({
    resourceType: 'SearchParameter',
    url: 'http://example.org/sp',
    name: 'x',
    status: 'active',
    description: 'x',
    code: 'x',
    type: 'string',
    base: ['Patient'],
    ...over,
  }) as SearchParameter;

t.test('R4 and US Core parameters, without the ones HAPI keeps elsewhere', async (t) => {
  const patient = codes('Patient');
  for (const c of ['name', 'family', 'birthdate', 'general-practitioner', 'race', 'ethnicity', 'gender-identity']) {
    t.ok(patient.includes(c), c);
  }
  for (const c of NOT_INDEXED_PARAMS) t.notOk(patient.includes(c), `no ${c}`);
  t.ok(codes('Condition').includes('asserted-date'), 'US Core on Condition');
  t.same(registry.get('Observation', 'code-value-quantity')?.parts, [], 'composites have no parts to evaluate');
  t.equal(registry.get('Observation', 'code-value-quantity')?.type, 'composite');
  t.same(registry.get('Observation', 'subject')?.target.includes('Patient'), true);
});

t.test('only the parts of a union that apply to the type', async (t) => {
  const code = registry.get('Condition', 'code')!;
  t.same(
    code.parts.map((p) => p.path),
    ['Condition.code'],
  );
  t.equal(code.union, true);
  t.ok(code.expression.includes('AllergyIntolerance.code'));
  t.same(
    registry.get('Observation', 'value-quantity')!.parts.map((p) => p.path),
    ['(Observation.value.ofType(Quantity))', '(Observation.value.ofType(SampledData))'],
  );
  t.same(
    registry.get('InsurancePlan', 'name')!.parts.map((p) => p.path),
    ['name', 'alias'],
    'untyped parts apply',
  );
  t.equal(registry.get('Patient', 'code'), undefined);
});

t.test('splitExpression keeps parentheses, strings and precedence', async (t) => {
  t.same(splitExpression("A.b | (C.d as E) | F.g.where(h = 'x|y')"), { parts: ['A.b', '(C.d as E)', "F.g.where(h = 'x|y')"], union: true });
  t.same(splitExpression('Patient.name'), { parts: ['Patient.name'], union: false });
  // `=` binds looser than `|`: this is `a = (b | c)`, one part.
  t.same(splitExpression("Patient.gender = 'a' | 'b'"), { parts: ["Patient.gender = 'a' | 'b'"], union: false });
});

t.test('applicablePart: own type, supertypes, other types', async (t) => {
  t.equal(applicablePart('Patient.name', 'Patient'), 'Patient.name');
  t.equal(applicablePart('Practitioner.name', 'Patient'), undefined);
  t.equal(applicablePart('(Observation.value as Quantity)', 'Observation'), '(Observation.value as Quantity)');
  t.equal(applicablePart('Resource.meta.versionId', 'Patient'), 'Patient.meta.versionId');
  t.equal(applicablePart('DomainResource.text', 'Bundle'), undefined);
  t.equal(applicablePart('DomainResource.text', 'Patient'), 'Patient.text');
  t.equal(applicablePart('name', 'InsurancePlan'), 'name');
});

t.test('add() makes a SearchParameter searchable at run time, and can replace one', async (t) => {
  const own = createR4Registry();
  t.equal(own.get('Patient', 'nickname'), undefined);
  own.add(sp({ code: 'nickname', expression: "Patient.name.where(use = 'nickname').given" }));
  t.equal(own.get('Patient', 'nickname')?.type, 'string');
  t.equal(registry.get('Patient', 'nickname'), undefined, 'other registries are untouched');

  own.add(sp({ code: 'version', type: 'token', base: ['Resource'], expression: 'Resource.meta.versionId' }));
  t.same(
    own.get('Observation', 'version')?.parts.map((p) => p.path),
    ['Observation.meta.versionId'],
  );
  t.ok(own.get('Bundle', 'version'), 'Resource applies to every type');

  own.add(sp({ code: 'note', base: ['DomainResource'], expression: 'DomainResource.text.div' }));
  t.ok(own.get('Patient', 'note'));
  t.equal(own.get('Bundle', 'note'), undefined, 'DomainResource skips Bundle');

  own.add(sp({ code: 'family', expression: 'Patient.name.given' }));
  t.same(
    own.get('Patient', 'family')?.parts.map((p) => p.path),
    ['Patient.name.given'],
    'replaced by code and base',
  );
  t.same(
    own.get('Practitioner', 'family')?.parts.map((p) => p.path),
    ['Practitioner.name.family'],
    'other bases keep theirs',
  );

  own.add(sp({ code: '_id', type: 'token', base: ['Resource'], expression: 'Resource.id' }));
  t.equal(own.get('Patient', '_id'), undefined, 'HAPI keeps _id elsewhere');
  t.throws(() => own.add(sp({ base: [] })), /at least one base/);
});
