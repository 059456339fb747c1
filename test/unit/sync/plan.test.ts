/**
 * The sync's plan (src/sync/plan.ts): types and patient parameters from a CapabilityStatement, the
 * granted scopes (v1, v2, wildcards), and the variants tried when a search needs more parameters.
 */
import t from 'tap';
import { fanOut, granted, parseGrants, queryKey, readCapabilities, TYPE_ORDER, variantOf } from '../../../src/sync/plan.ts';

const cs = (resource: object[], operation?: object[]) => ({
  resourceType: 'CapabilityStatement',
  rest: [{ mode: 'server', resource, ...(operation ? { operation } : {}) }],
});
const res = (type: string, params: string[], operation?: object[]) => ({
  type,
  searchParam: params.map((name) => ({ name, type: 'token' })),
  ...(operation ? { operation } : {}),
});

t.test('types listed with a patient parameter, in order; _lastUpdated as listed', async (t) => {
  const caps = readCapabilities(
    cs([
      res('Observation', ['patient', 'category', 'code']),
      res('DocumentReference', ['patient', '_lastupdated']), // Epic writes it lower-case
      res('Encounter', ['patient', '_lastUpdated']),
      res('Practitioner', ['name']),
      res('Patient', ['_id'], [{ name: 'match' }, { name: 'summary' }]),
      res('Coverage', ['beneficiary']), // Blue Button
      res('ExplanationOfBenefit', ['patient', 'type', '_lastUpdated']),
      res('Specimen', ['subject']),
      res('Goal', ['lifecycle-status']), // no patient parameter: not searched
    ]),
  );
  t.same(
    caps.types.map((x) => x.type),
    ['Encounter', 'Specimen', 'Coverage', 'ExplanationOfBenefit', 'Observation', 'DocumentReference'],
  );
  t.same(
    caps.types.find((x) => x.type === 'Coverage'),
    { type: 'Coverage', patientParam: 'beneficiary' },
  );
  t.same(
    caps.types.find((x) => x.type === 'Specimen'),
    { type: 'Specimen', patientParam: 'subject' },
  );
  t.equal(caps.types.find((x) => x.type === 'DocumentReference')!.lastUpdated, '_lastupdated', 'sent as listed');
  t.equal(caps.types.find((x) => x.type === 'Observation')!.lastUpdated, undefined, 'not listed: never sent');
  t.equal(caps.everything, false, 'Patient ops match and summary: no $everything');
});

t.test('$everything, as a Patient operation or a system one', async (t) => {
  t.ok(
    readCapabilities(
      cs([res('Patient', ['_id'], [{ name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' }])]),
    ).everything,
  );
  t.ok(
    readCapabilities(cs([res('Observation', ['patient'])], [{ name: 'x', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' }]))
      .everything,
  );
});

t.test('no CapabilityStatement, or one listing nothing: every type by patient', async (t) => {
  for (const c of [undefined, {}, 'oops', cs([]), { rest: 'x' }]) {
    const caps = readCapabilities(c);
    t.same(
      caps.types.map((x) => x.type),
      TYPE_ORDER,
    );
    t.ok(caps.types.every((x) => x.patientParam === 'patient' && !x.lastUpdated));
  }
});

t.test('granted scopes: v1, v2, wildcards, user scopes', async (t) => {
  const v1 = parseGrants('launch/patient openid fhirUser offline_access patient/Observation.read patient/Patient.read');
  t.same([granted(v1, 'Observation', 'search'), granted(v1, 'Patient', 'read'), granted(v1, 'Condition', 'search')], [true, true, false]);
  const wild = parseGrants('patient/*.read openid');
  t.ok(granted(wild, 'ExplanationOfBenefit', 'search'));
  const v2 = parseGrants('patient/Observation.rs patient/Patient.r patient/Condition.s patient/Encounter.c patient/Goal.cruds');
  t.same(
    [
      granted(v2, 'Observation', 'search'),
      granted(v2, 'Patient', 'read'),
      granted(v2, 'Patient', 'search'),
      granted(v2, 'Condition', 'search'),
      granted(v2, 'Encounter', 'search'),
      granted(v2, 'Goal', 'search'),
    ],
    [true, true, false, true, false, true],
  );
  const granular = parseGrants('patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory');
  t.ok(granted(granular, 'Observation', 'search'), 'a granular scope grants the type (the system narrows it)');
  t.ok(granted(parseGrants('user/*.*'), 'Condition', 'search'));
  t.notOk(granted(parseGrants('patient/Observation.write'), 'Observation', 'search'), 'write is not read');
  t.ok(granted(parseGrants('launch/patient openid'), 'Observation', 'search'), 'no resource scopes at all: nothing to go by, all granted');
  t.ok(granted(parseGrants(''), 'Observation', 'search'));
});

t.test('the variants of a search that needs more parameters', async (t) => {
  const obs = fanOut('Observation');
  t.equal(obs.length, 1, 'categories one by one: a suppressed one costs itself only');
  for (const c of ['laboratory', 'vital-signs', 'social-history', 'survey', 'sdoh', 'core-characteristics', 'LDA', 'labor-delivery'])
    t.ok(obs[0].includes(`category=${c}`), c);
  t.same(
    fanOut('MedicationRequest'),
    [['intent=order,plan,proposal,option'], ['intent=order', 'intent=plan', 'intent=proposal', 'intent=option']],
    'every intent at once, then one by one',
  );
  t.ok(fanOut('CarePlan')[0].includes('category=38717003') && fanOut('CarePlan')[0].includes('category=assess-plan'));
  t.equal(fanOut('CareTeam')[0][0], 'status=active,proposed,suspended,inactive,entered-in-error');
  t.same(fanOut('Condition'), [], 'nothing to fan out');
  t.equal(queryKey('Observation', 'category=laboratory'), 'Observation?category=laboratory');
  t.same([variantOf('Observation?category=laboratory'), variantOf('Observation')], ['category=laboratory', undefined]);
});
