/** Row conversion: what extractIndexes writes for each datatype, with HAPI's hashes. */
import type { Resource } from '@medplum/fhirtypes';
import t from 'tap';
import { extractIndexes } from '../../../src/indexing/extract.ts';
import { createR4Registry } from '../../../src/indexing/registry.ts';
import type { ResourceIndexes } from '../../../src/indexing/types.ts';
import { hapiHash } from '../../../src/storage/hash.ts';

const registry = createR4Registry();
// Most cases run with HAPI's "index missing fields" on, to see the missing rows too.
const index = (r: Resource, partitionId?: number): ResourceIndexes => extractIndexes(r, registry, { partitionId, indexMissing: true });

t.test('by default, as in HAPI, no missing rows and no presence rows', async (t) => {
  const rows = extractIndexes({ resourceType: 'Patient', name: [{ family: 'x' }] }, registry);
  t.ok(rows.strings.length > 0);
  t.equal([...rows.strings, ...rows.tokens, ...rows.dates, ...rows.uris].filter((r) => r.missing).length, 0);
  t.equal(rows.present.length, 0);
});
const named = <T extends { name: string }>(rows: T[], name: string): T[] => rows.filter((r) => r.name === name);

t.test('HumanName: family, each given, text, prefix, suffix, one string row each', async (t) => {
  const rows = index({
    resourceType: 'Patient',
    name: [{ family: 'Ström', given: ['Åsa', 'Lena'], prefix: ['Dr'], suffix: ['III'], text: 'Dr Åsa Ström' }],
  }).strings;
  const name = named(rows, 'name');
  t.same(name.map((r) => r.valueExact).sort(), ['Dr', 'Dr Åsa Ström', 'III', 'Lena', 'Ström', 'Åsa'].sort());
  const strom = name.find((r) => r.valueExact === 'Ström')!;
  t.equal(strom.valueNormalized, 'STROM');
  t.equal(strom.missing, false);
  t.equal(strom.hashIdentity, hapiHash(['Patient', 'name']));
  t.equal(strom.hashExact, hapiHash(['Patient', 'name', 'Ström']));
  // HAPI hashes the first character of the normalized value (HASH_PREFIX_LENGTH = 1).
  t.equal(strom.hashNormPrefix, hapiHash(['Patient', 'name', 'S']));
  t.same(
    named(rows, 'family').map((r) => r.valueExact),
    ['Ström'],
  );
  t.same(
    named(rows, 'given').map((r) => r.valueExact),
    ['Åsa', 'Lena'],
  );
});

t.test('Address: lines, city, district, state, postal code, country, text', async (t) => {
  const rows = index({
    resourceType: 'Patient',
    address: [
      { line: ['1 Main St', 'Apt 2'], city: 'Springfield', district: 'Sangamon', state: 'IL', postalCode: '62701', country: 'US', text: 'somewhere' },
    ],
  }).strings;
  t.same(
    named(rows, 'address')
      .map((r) => r.valueExact)
      .sort(),
    ['1 Main St', 'Apt 2', 'IL', 'Sangamon', 'Springfield', 'US', '62701', 'somewhere'].sort(),
  );
  t.same(
    named(rows, 'address-city').map((r) => r.valueExact),
    ['Springfield'],
  );
});

t.test('strings are cut to 200 characters; blank ones make no row', async (t) => {
  const rows = index({ resourceType: 'Patient', name: [{ family: 'x'.repeat(250), given: ['  '] }] }).strings;
  const family = named(rows, 'family');
  t.equal(family[0].valueExact!.length, 200);
  t.same(
    named(rows, 'given').map((r) => r.missing),
    [true],
    'a blank given counts as missing',
  );
});

t.test('CodeableConcept: a token per coding, display and text as string rows of the same param', async (t) => {
  const rows = index({
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8302-2', display: 'Body Height' }], text: 'Height' },
  });
  const tokens = named(rows.tokens, 'code');
  t.equal(tokens.length, 1);
  t.match(tokens[0], { system: 'http://loinc.org', value: '8302-2', missing: false });
  t.equal(tokens[0].hashSys, hapiHash(['Observation', 'code', 'http://loinc.org']));
  t.equal(tokens[0].hashSysAndValue, hapiHash(['Observation', 'code', 'http://loinc.org', '8302-2']));
  t.equal(tokens[0].hashValue, hapiHash(['Observation', 'code', '8302-2']));
  t.same(
    named(rows.strings, 'code')
      .map((r) => r.valueExact)
      .sort(),
    ['Body Height', 'Height'],
  );
  // An enumerated code gets the system its required binding implies, as HAPI indexes it.
  const status = named(rows.tokens, 'status')[0];
  t.match(status, { system: 'http://hl7.org/fhir/observation-status', value: 'final' });
  t.equal(status.hashSys, hapiHash(['Observation', 'status', 'http://hl7.org/fhir/observation-status']));
  t.equal(status.hashSysAndValue, hapiHash(['Observation', 'status', 'http://hl7.org/fhir/observation-status', 'final']));
  t.equal(status.hashValue, hapiHash(['Observation', 'status', 'final']));
});

t.test('a token without a system hashes the system as ""', async (t) => {
  const rows = index({ resourceType: 'Patient', identifier: [{ value: 'x1' }] }).tokens;
  const id = named(rows, 'identifier')[0];
  t.match(id, { system: null, value: 'x1' });
  t.equal(id.hashSys, hapiHash(['Patient', 'identifier', null]));
  t.equal(id.hashSysAndValue, hapiHash(['Patient', 'identifier', '', 'x1']), 'no system hashes as ""');
});

t.test('Identifier: system and trimmed value; type.text as a string row; no value, no token', async (t) => {
  const rows = index({
    resourceType: 'Patient',
    identifier: [
      { system: 'urn:oid:1.2.3', value: ' 123 ', type: { text: 'MRN' } },
      { system: 'urn:oid:9.9', type: { text: 'Passport' } },
    ],
  });
  const tokens = named(rows.tokens, 'identifier');
  t.equal(tokens.length, 1);
  t.match(tokens[0], { system: 'urn:oid:1.2.3', value: '123' });
  t.equal(tokens[0].hashSysAndValue, hapiHash(['Patient', 'identifier', 'urn:oid:1.2.3', '123']));
  t.same(
    named(rows.strings, 'identifier')
      .map((r) => r.valueExact)
      .sort(),
    ['MRN', 'Passport'],
  );
});

t.test('ContactPoint: its system code as the token system', async (t) => {
  const rows = index({
    resourceType: 'Patient',
    telecom: [
      { system: 'phone', value: '555-1234' },
      { system: 'email', value: 'a@b.org' },
    ],
  }).tokens;
  t.same(
    named(rows, 'telecom').map((r) => [r.system, r.value]),
    [
      ['phone', '555-1234'],
      ['email', 'a@b.org'],
    ],
  );
  t.same(
    named(rows, 'phone').map((r) => r.value),
    ['555-1234'],
  );
  t.same(
    named(rows, 'email').map((r) => r.value),
    ['a@b.org'],
  );
});

t.test('code (with its bound system), boolean and extension values as tokens', async (t) => {
  const rows = index({
    resourceType: 'Patient',
    gender: 'female',
    active: true,
    deceasedDateTime: '2020-01-01',
    extension: [
      {
        url: 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-race',
        extension: [{ url: 'ombCategory', valueCoding: { system: 'urn:oid:2.16.840.1.113883.6.238', code: '2106-3' } }],
      },
    ],
  }).tokens;
  t.match(named(rows, 'gender'), [{ system: 'http://hl7.org/fhir/administrative-gender', value: 'female' }]);
  t.match(named(rows, 'active'), [{ value: 'true' }]);
  t.match(named(rows, 'deceased'), [{ value: 'true' }]);
  t.match(named(rows, 'race'), [{ system: null, value: '2106-3' }]);
});

t.test("a CodeSystem's own codes get its url as system (as HAPI)", async (t) => {
  const rows = index({ resourceType: 'CodeSystem', status: 'active', content: 'complete', url: 'http://e.org/cs', concept: [{ code: 'a' }] });
  t.match(named(rows.tokens, 'code'), [{ system: 'http://e.org/cs', value: 'a' }]);
});

t.test('extension values are indexed by their own type', async (t) => {
  const rows = index({
    resourceType: 'Condition',
    subject: { reference: 'Patient/1' },
    extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/condition-assertedDate', valueDateTime: '2019-05' }],
  });
  t.match(named(rows.dates, 'asserted-date'), [{ low: Date.parse('2019-05-01T00:00:00Z'), high: Date.parse('2019-05-31T23:59:59.999Z') }]);
  // An expression that ends on the Extension itself: HAPI indexes its value.
  const own = createR4Registry();
  own.add({
    resourceType: 'SearchParameter',
    status: 'active',
    name: 'b',
    description: 'b',
    url: 'http://e.org/b',
    code: 'birth-sex',
    type: 'token',
    base: ['Patient'],
    expression: "Patient.extension('http://e.org/birthsex')",
  });
  const p = extractIndexes({ resourceType: 'Patient', extension: [{ url: 'http://e.org/birthsex', valueCode: 'F' }] }, own, { indexMissing: true });
  t.match(named(p.tokens, 'birth-sex'), [{ system: null, value: 'F', missing: false }]);
});

t.test('date precision ranges and time zones', async (t) => {
  const birth = (birthDate: string) => named(index({ resourceType: 'Patient', birthDate }).dates, 'birthdate')[0];
  t.match(birth('2020'), {
    low: Date.parse('2020-01-01T00:00:00.000Z'),
    high: Date.parse('2020-12-31T23:59:59.999Z'),
    lowOrdinal: 20200101,
    highOrdinal: 20201231,
    missing: false,
  });
  t.match(birth('2020-02'), { high: Date.parse('2020-02-29T23:59:59.999Z'), highOrdinal: 20200229 });
  t.match(birth('2020-02-03'), { low: Date.parse('2020-02-03T00:00:00Z'), high: Date.parse('2020-02-03T23:59:59.999Z') });
  const d = named(index({ resourceType: 'Observation', status: 'final', code: {}, effectiveDateTime: '2020-03-01T01:30:00+02:00' }).dates, 'date')[0];
  t.equal(d.low, Date.parse('2020-02-29T23:30:00.000Z'), 'converted to UTC');
  t.equal(d.high, Date.parse('2020-02-29T23:30:00.999Z'), 'to the end of the second');
  t.equal(d.lowOrdinal, 20200229, 'ordinals are UTC days');
  t.equal(d.hashIdentity, hapiHash(['Observation', 'date']));
});

t.test('Period: open ends are null; Timing: earliest to latest', async (t) => {
  const enc = (period: object) => named(index({ resourceType: 'Encounter', status: 'finished', class: {}, period } as Resource).dates, 'date');
  t.match(enc({ start: '2020-01-01' }), [{ low: Date.parse('2020-01-01T00:00:00Z'), high: null, lowOrdinal: 20200101, highOrdinal: null }]);
  t.match(enc({ end: '2020-01' }), [{ low: null, high: Date.parse('2020-01-31T23:59:59.999Z') }]);
  t.match(enc({}), [{ missing: true, low: null }], 'an empty period is missing');
  const timing = named(
    index({
      resourceType: 'CarePlan',
      status: 'active',
      intent: 'plan',
      subject: { reference: 'Patient/1' },
      activity: [
        {
          detail: {
            status: 'scheduled',
            scheduledTiming: { event: ['2021-05-02', '2021-05-01T10:00:00Z'], repeat: { boundsPeriod: { end: '2021-06' } } },
          },
        },
      ],
    }).dates,
    'activity-date',
  );
  t.match(timing, [{ low: Date.parse('2021-05-01T10:00:00Z'), high: Date.parse('2021-06-30T23:59:59.999Z') }]);
});

t.test('Quantity: value as text, code (else unit) as units, HAPI hashes', async (t) => {
  const obs = (valueQuantity: object) =>
    named(index({ resourceType: 'Observation', status: 'final', code: {}, valueQuantity } as Resource).quantities, 'value-quantity');
  const [q] = obs({ value: 1.5, unit: 'centimeter', system: 'http://unitsofmeasure.org', code: 'cm' });
  t.match(q, { value: '1.5', system: 'http://unitsofmeasure.org', units: 'cm', missing: false });
  t.equal(q.hashIdentityAndUnits, hapiHash(['Observation', 'value-quantity', 'cm']));
  t.equal(q.hashIdentitySysUnits, hapiHash(['Observation', 'value-quantity', 'http://unitsofmeasure.org', 'cm']));
  t.match(obs({ value: 2, unit: 'kg' }), [{ value: '2', system: null, units: 'kg' }]);
  t.match(obs({ value: 1e-7, code: 'g' }), [{ value: '0.0000001' }], 'never in exponent form');
  t.match(obs({ unit: 'kg' }), [{ missing: true }], 'no value, no quantity');
});

t.test('Money: currency as units, ISO 4217 as system; Range: low and high', async (t) => {
  const [m] = named(
    index({
      resourceType: 'ChargeItem',
      status: 'billed',
      code: {},
      subject: { reference: 'Patient/1' },
      priceOverride: { value: 12.5, currency: 'EUR' },
    }).quantities,
    'price-override',
  );
  t.match(m, { value: '12.5', system: 'urn:iso:std:iso:4217', units: 'EUR' });
  t.equal(m.hashIdentitySysUnits, hapiHash(['ChargeItem', 'price-override', 'urn:iso:std:iso:4217', 'EUR']));
  const range = named(
    index({
      resourceType: 'Condition',
      subject: { reference: 'Patient/1' },
      onsetRange: { low: { value: 1, code: 'a' }, high: { value: 3, code: 'a' } },
    }).quantities,
    'onset-age',
  );
  t.same(
    range.map((r) => r.value),
    ['1', '3'],
  );
});

t.test('number, uri and coordinates', async (t) => {
  const risk = index({
    resourceType: 'RiskAssessment',
    status: 'final',
    subject: { reference: 'Patient/1' },
    prediction: [{ probabilityDecimal: 0.25 }],
  });
  t.match(named(risk.numbers, 'probability'), [{ value: '0.25', missing: false }]);
  const vs = index({ resourceType: 'ValueSet', status: 'active', url: 'http://example.org/vs' });
  t.match(named(vs.uris, 'url'), [{ uri: 'http://example.org/vs', hashUri: hapiHash(['ValueSet', 'url', 'http://example.org/vs']) }]);
  const loc = index({ resourceType: 'Location', position: { latitude: 42.25, longitude: -83.5 } });
  t.match(loc.coords, [{ name: 'near', latitude: 42.25, longitude: -83.5, hashIdentity: hapiHash(['Location', 'near']) }]);
});

t.test('missing rows for params without values; presence rows for references', async (t) => {
  const rows = index({ resourceType: 'Patient', maritalStatus: { text: 'married' } } as Resource);
  t.match(named(rows.dates, 'birthdate'), [{ missing: true, low: null, high: null, hashIdentity: hapiHash(['Patient', 'birthdate']) }]);
  t.match(named(rows.strings, 'family'), [{ missing: true, valueExact: null, hashExact: null }]);
  t.match(named(rows.tokens, 'gender'), [{ missing: true, value: null, hashValue: null }]);
  const gp = rows.present.find((r) => r.name === 'general-practitioner')!;
  t.equal(gp.present, false);
  t.equal(gp.hashPresence, hapiHash(['Patient', 'general-practitioner', 'false']));
  t.equal(
    rows.tokens.filter((r) => r.missing).length,
    new Set(rows.tokens.filter((r) => r.missing).map((r) => r.name)).size,
    'one missing row per param',
  );
  const obs = index({ resourceType: 'Observation', status: 'final', code: { text: 'only text' } });
  t.match(named(obs.strings, 'code'), [{ valueExact: 'only text', missing: false }]);
  t.match(named(obs.tokens, 'code'), [{ missing: true }], 'text alone leaves the token table missing');
  t.notOk(
    obs.tokens.some((r) => r.name.startsWith('code-value')),
    'composites make no rows',
  );
});

t.test('reference forms', async (t) => {
  const links = (reference: string) => index({ resourceType: 'Observation', status: 'final', code: {}, subject: { reference } }).links;
  t.same(
    links('Patient/123').sort((a, b) => a.path.localeCompare(b.path)),
    [
      { path: 'Observation.subject', name: 'subject', targetType: 'Patient', targetId: '123', targetUrl: null, targetVersion: null },
      {
        path: 'Observation.subject.where(resolve() is Patient)',
        name: 'patient',
        targetType: 'Patient',
        targetId: '123',
        targetUrl: null,
        targetVersion: null,
      },
    ],
  );
  t.match(links('Patient/123/_history/4'), [{ targetId: '123', targetVersion: '4' }, { targetVersion: '4' }]);
  t.match(links('Group/g1'), [{ name: 'subject', targetType: 'Group' }]);
  t.equal(links('Group/g1').length, 1, 'patient only takes Patient references');
  // @medplum/core's resolve() does not parse absolute URLs, so `patient` misses them (HAPI would not).
  t.same(links('http://other.org/fhir/Patient/9'), [
    {
      path: 'Observation.subject',
      name: 'subject',
      targetType: 'Patient',
      targetId: null,
      targetUrl: 'http://other.org/fhir/Patient/9',
      targetVersion: null,
    },
  ]);
  t.same(links('#contained'), []);
  t.same(links('urn:uuid:5b3b0b0a-0000-4000-8000-000000000000'), []);
  t.same(links('Patient?identifier=x|1'), [], 'conditional references are resolved before indexing');
  const present = index({ resourceType: 'Observation', status: 'final', code: {}, subject: { reference: 'Patient/1' } }).present;
  t.match(
    present.find((r) => r.name === 'subject'),
    { present: true, hashPresence: hapiHash(['Observation', 'subject', 'true']) },
  );
  const qr = index({ resourceType: 'QuestionnaireResponse', status: 'completed', questionnaire: 'http://example.org/Questionnaire/q1|2' });
  t.match(qr.links, [{ name: 'questionnaire', targetUrl: 'http://example.org/Questionnaire/q1|2', targetType: null, targetId: null }]);
});

t.test('identical rows within a resource are written once', async (t) => {
  const rows = index({
    resourceType: 'Patient',
    name: [
      { family: 'Doe', given: ['Jo'] },
      { family: 'Doe', given: ['Jo', 'Jo'] },
    ],
    identifier: [
      { system: 's', value: '1' },
      { system: 's', value: '1' },
    ],
    generalPractitioner: [{ reference: 'Practitioner/1' }, { reference: 'Practitioner/1' }],
  });
  t.same(
    named(rows.strings, 'family').map((r) => r.valueExact),
    ['Doe'],
  );
  t.same(
    named(rows.strings, 'given').map((r) => r.valueExact),
    ['Jo'],
  );
  t.same(
    named(rows.strings, 'name').map((r) => r.valueExact),
    ['Doe', 'Jo'],
  );
  t.equal(named(rows.tokens, 'identifier').length, 1);
  t.equal(rows.links.filter((l) => l.name === 'general-practitioner').length, 1);
});

t.test('partition id goes into every hash', async (t) => {
  const rows = index({ resourceType: 'Patient', name: [{ family: 'Doe' }] }, 1);
  const family = named(rows.strings, 'family')[0];
  t.equal(named(rows.strings, 'name')[0].hashIdentity, -6667609654163557704n, "HAPI's check value");
  t.equal(family.hashExact, hapiHash(['Patient', 'family', 'Doe'], 1));
  t.not(family.hashExact, hapiHash(['Patient', 'family', 'Doe']));
  t.equal(rows.present[0].hashPresence, hapiHash(['Patient', rows.present[0].name, 'false'], 1));
});

t.test('an expression that fails on a resource is reported and skipped', async (t) => {
  const own = createR4Registry();
  // `and` needs single booleans: two given names make it fail.
  own.add({
    resourceType: 'SearchParameter',
    status: 'active',
    name: 'x',
    description: 'x',
    url: 'http://e.org/x',
    code: 'odd',
    type: 'token',
    base: ['Patient'],
    expression: 'Patient.name.given and Patient.active',
  });
  const errors: string[] = [];
  const rows = extractIndexes({ resourceType: 'Patient', name: [{ given: ['A', 'B'] }] }, own, {
    onError: (param, path) => errors.push(`${param.code} ${path}`),
    indexMissing: true,
  });
  t.same(errors, ['odd Patient.name.given and Patient.active']);
  t.match(named(rows.tokens, 'odd'), [{ missing: true }]);
  t.match(named(rows.strings, 'given'), [{ valueExact: 'A' }, { valueExact: 'B' }], 'the other params are indexed');
});
