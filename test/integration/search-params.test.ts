/**
 * Search parameters, type by type: the edge cases of each parameter type, its prefixes and
 * modifiers, AND by repetition and OR by comma, the escapes, :missing, and _sort on each type.
 * Every row asserts the exact set (or order) of matching ids. The expectations come from the
 * FHIR R4 search specification, not from the server's code.
 * See: https://hl7.org/fhir/R4/search.html
 */
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildTestApp } from '../helper.ts';
import {
  COND_CAT,
  FHIR,
  FHIR_JSON,
  type Json,
  LOINC,
  type Row,
  runTable,
  SCT,
  searchAll,
  send,
  sorted,
  UCUM,
  upsertAll,
  url,
} from './search-support.ts';

const app = await buildTestApp(t);

// --- Fixtures ------------------------------------------------------------------------------------

const V2_0203 = 'http://terminology.hl7.org/CodeSystem/v2-0203';

const patient = (id: string, extra: Json): Json => ({ resourceType: 'Patient', id, ...extra });
const name = (family: string | undefined, ...given: string[]): Json[] => [
  { ...(family !== undefined ? { family } : {}), ...(given.length ? { given } : {}) },
];

const PATIENTS: Json[] = [
  patient('p-ref', { name: name('Refson', 'Rex'), gender: 'male', birthDate: '1970-01-01' }),
  patient('p-renee', { name: name('Renée', 'Anne'), gender: 'female' }),
  patient('p-rene', { name: name('Rene', 'Paul'), gender: 'male' }),
  patient('p-muller', {
    name: name('Müller', 'Jürgen'),
    address: [{ line: ['1 Mission St'], city: 'San Francisco', postalCode: '94110', country: 'US' }],
  }),
  patient('p-angstrom', { name: name('Ångström', 'Annette') }),
  patient('p-wang', { name: name('王', '小明') }),
  patient('p-comma', { name: name('Smith, Jr', 'Sam') }),
  patient('p-smithers', { name: name('Smithers', 'Waylon') }),
  patient('p-backslash', { name: name('Back\\slash'), identifier: [{ system: 'urn:esc', value: 'back\\slash' }] }),
  patient('p-mrn', { identifier: [{ type: { coding: [{ system: V2_0203, code: 'MR' }] }, system: 'urn:oid:1.2.3', value: '12345' }] }),
  patient('p-dl', { identifier: [{ type: { coding: [{ system: V2_0203, code: 'DL' }] }, system: 'urn:dl', value: '12345' }] }),
  patient('p-xy', { identifier: [{ system: 'urn:esc', value: 'X,Y' }] }),
  patient('p-x', { identifier: [{ system: 'urn:esc', value: 'X' }] }),
  patient('p-pipe', { identifier: [{ system: 'urn:esc', value: 'A|B' }] }),
  // The sort group: found by identifier=urn:sort| and nothing else.
  patient('sort-1', { identifier: [{ system: 'urn:sort', value: 'S1' }], name: name('Baker', 'Zed'), gender: 'female', birthDate: '1990-01-01' }),
  patient('sort-2', { identifier: [{ system: 'urn:sort', value: 'S2' }], name: name('Adams', 'Amy'), gender: 'male', birthDate: '1985-05-05' }),
  patient('sort-3', { identifier: [{ system: 'urn:sort', value: 'S3' }], name: name('Carter', 'Bob'), gender: 'male', birthDate: '1990-01-01' }),
  patient('sort-4', { identifier: [{ system: 'urn:sort', value: 'S4' }], name: name('Baker', 'Ann'), gender: 'female', birthDate: '2000-12-31' }),
  patient('sort-5', { identifier: [{ system: 'urn:sort', value: 'S5' }], name: name('Adams', 'Cid'), gender: 'other', birthDate: '1970-07-07' }),
];
/** Created after the transaction (for _lastUpdated); a Patient like the others in every other search. */
const LATE = 'p-late';
const ALL_PATIENTS = [...PATIENTS.map((p) => p.id as string), LATE];
const without = (all: string[], ...ids: string[]): string[] => all.filter((id) => !ids.includes(id));
const NO_FAMILY = ['p-mrn', 'p-dl', 'p-xy', 'p-x', 'p-pipe'];
const WITH_GENDER = ['p-ref', 'p-renee', 'p-rene', 'sort-1', 'sort-2', 'sort-3', 'sort-4', 'sort-5'];
const WITH_BIRTHDATE = ['p-ref', 'sort-1', 'sort-2', 'sort-3', 'sort-4', 'sort-5'];

// Observations with a date (and nothing else: no subject, no value). Their ranges, in UTC:
//   d-tz      2023-12-31T22:30:00.000 .. 22:30:00.999  (2024-01-01T00:30:00+02:00)
//   d-year    2024-01-01 .. 2024-12-31T23:59:59.999
//   d-day     2024-06-15 .. 2024-06-15T23:59:59.999
//   d-period  2023-12-15 .. 2024-01-15T23:59:59.999
//   d-open    2024-03-01 .. (no end)
//   d-timing  2022-05-01T08:00:00 .. 2022-05-03T08:00:00.999  (a Timing: its outer limits)
const dateObs = (id: string, effective: Json): Json => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  code: { coding: [{ system: 'urn:fx', code: 'date' }] },
  ...effective,
});
const DATE_OBS: Json[] = [
  dateObs('d-tz', { effectiveDateTime: '2024-01-01T00:30:00+02:00' }),
  dateObs('d-year', { effectiveDateTime: '2024' }),
  dateObs('d-day', { effectiveDateTime: '2024-06-15' }),
  dateObs('d-period', { effectivePeriod: { start: '2023-12-15', end: '2024-01-15' } }),
  dateObs('d-open', { effectivePeriod: { start: '2024-03-01' } }),
  dateObs('d-timing', { effectiveTiming: { event: ['2022-05-01T08:00:00Z', '2022-05-03T08:00:00Z'] } }),
];
const DATE_IDS = DATE_OBS.map((o) => o.id as string);

// Observations with a value (and a subject, and no date).
const ucum = (value: number, code: string): Json => ({ value, unit: code, system: UCUM, code });
const qtyObs = (id: string, system: string, code: string, extra: Json): Json => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  code: { coding: [{ system, code }] },
  subject: { reference: 'Patient/p-ref' },
  ...extra,
});
const QTY_OBS: Json[] = [
  qtyObs('q-70kg', LOINC, '29463-7', { valueQuantity: ucum(70, 'kg') }),
  qtyObs('q-1000g', LOINC, '29463-7', { valueQuantity: ucum(1000, 'g') }),
  qtyObs('q-1kg', LOINC, '29463-7', { valueQuantity: ucum(1, 'kg') }),
  qtyObs('q-70000g', LOINC, '29463-7', { valueQuantity: ucum(70000, 'g') }),
  qtyObs('q-70g', LOINC, '29463-7', { valueQuantity: ucum(70, 'g') }),
  qtyObs('q-nounit', LOINC, '29463-7', { valueQuantity: { value: 70, unit: 'kilo' } }),
  qtyObs('q-sys', LOINC, '8480-6', { valueQuantity: ucum(120, 'mm[Hg]') }),
  qtyObs('q-sys2', LOINC, '8480-6', { valueQuantity: ucum(95, 'mm[Hg]') }),
  qtyObs('q-dia', LOINC, '8462-4', { valueQuantity: ucum(110, 'mm[Hg]') }),
  qtyObs('q-panel', LOINC, '85354-9', {
    component: [
      { code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: ucum(130, 'mm[Hg]') },
      { code: { coding: [{ system: LOINC, code: '8462-4' }] }, valueQuantity: ucum(85, 'mm[Hg]') },
    ],
  }),
  // A code with a $ in it, for the \$ escape of composite values.
  qtyObs('q-esc', 'urn:fx', 'a$b', { valueQuantity: { value: 5 } }),
];
const QTY_IDS = QTY_OBS.map((o) => o.id as string);
const WEIGHTS = ['q-70kg', 'q-1000g', 'q-1kg', 'q-70000g', 'q-70g', 'q-nounit'];

const condition = (id: string, subject: Json, extra: Json): Json => ({ resourceType: 'Condition', id, subject, ...extra });
const CONDITIONS: Json[] = [
  condition(
    'c-a',
    { reference: 'Patient/p-ref' },
    {
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
      category: [{ coding: [{ system: COND_CAT, code: 'problem-list-item' }] }],
      code: { coding: [{ system: SCT, code: '44054006', display: 'Diabetes mellitus type 2' }] },
    },
  ),
  condition(
    'c-b',
    { reference: 'Patient/p-ref' },
    {
      category: [{ coding: [{ system: COND_CAT, code: 'encounter-diagnosis' }] }],
      code: { coding: [{ system: SCT, code: '38341003', display: 'Hypertensive disorder' }], text: 'High blood pressure' },
    },
  ),
  condition('c-c', { reference: 'Patient/p-renee' }, { code: { coding: [{ system: 'http://example.org/local', code: 'HA' }], text: 'Headache' } }),
  condition('c-d', { reference: 'http://other.example/fhir/Patient/ext1' }, { code: { coding: [{ code: '44054006' }] } }),
  condition('c-e', { identifier: { system: 'urn:mrn', value: '777' } }, {}),
];

const chargeItem = (id: string, factorOverride?: number): Json => ({
  resourceType: 'ChargeItem',
  id,
  status: 'billable',
  code: { text: 'charge' },
  subject: { reference: 'Patient/p-ref' },
  ...(factorOverride !== undefined ? { factorOverride } : {}),
});
const CHARGE_ITEMS: Json[] = [
  chargeItem('ci-100', 100),
  chargeItem('ci-1002', 100.2),
  chargeItem('ci-1006', 100.6),
  chargeItem('ci-995', 99.5),
  chargeItem('ci-994', 99.4),
  chargeItem('ci-120', 120),
  chargeItem('ci-5', 5),
  chargeItem('ci-none'),
];

const VS_URL = 'http://example.org/fhir/ValueSet/diabetes-htn';
const VALUE_SETS: Json[] = [
  {
    resourceType: 'ValueSet',
    id: 'vs-dm',
    url: VS_URL,
    status: 'active',
    compose: { include: [{ system: SCT, concept: [{ code: '44054006' }, { code: '38341003' }] }] },
  },
  { resourceType: 'ValueSet', id: 'vs-a', url: 'http://acme.org/fhir/ValueSet/a', status: 'active' },
  { resourceType: 'ValueSet', id: 'vs-ab', url: 'http://acme.org/fhir/ValueSet/a/b', status: 'active' },
  { resourceType: 'ValueSet', id: 'vs-x', url: 'http://acme.org/fhirx/ValueSet/z', status: 'active' },
  { resourceType: 'ValueSet', id: 'vs-nourl', status: 'draft' },
];

const CONF = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
const ORGANIZATIONS: Json[] = [
  {
    resourceType: 'Organization',
    id: 'org-t1',
    meta: {
      tag: [{ system: 'urn:tags', code: 'red' }],
      profile: ['http://example.org/StructureDefinition/org-a'],
      security: [{ system: CONF, code: 'R' }],
      source: 'http://source.test/app-a',
    },
    name: 'Tagged One',
  },
  {
    resourceType: 'Organization',
    id: 'org-t2',
    meta: {
      tag: [
        { system: 'urn:tags', code: 'blue' },
        { system: 'urn:other', code: 'red' },
      ],
      security: [{ system: CONF, code: 'N' }],
      source: 'http://source.test/app-b',
    },
    name: 'Tagged Two',
  },
  { resourceType: 'Organization', id: 'org-t3', name: 'Untagged' },
];

/** Every row of every table, checked at the end for ids that are not fixtures (a typo would pass as []). */
const ALL_ROWS: Row[] = [];
const table = (title: string, rows: Row[]): void => {
  ALL_ROWS.push(...rows);
  runTable(t, app, title, rows);
};

await upsertAll(app, [...PATIENTS, ...DATE_OBS, ...QTY_OBS, ...CONDITIONS, ...CHARGE_ITEMS, ...VALUE_SETS, ...ORGANIZATIONS]);
await sleep(30);
const BETWEEN = new Date().toISOString();
await sleep(30);
const late = await send(app, {
  method: 'PUT',
  url: `${FHIR}/Patient/${LATE}`,
  headers: { 'content-type': FHIR_JSON },
  payload: { resourceType: 'Patient', id: LATE, name: name('Late') },
});
if (late.statusCode !== 201) throw new Error(`setup: Patient/${LATE} answered ${late.statusCode}: ${late.body}`);
const LATE_UPDATED: string = late.json().meta.lastUpdated;

// --- date ------------------------------------------------------------------------------------------
// A date search value is an implicit range (its precision); the prefixes compare ranges
// (search.html#prefix): eq = the search range contains the resource range; gt = the range above
// the search value intersects the resource range; ge = gt or eq; lt/le likewise below;
// sa/eb = the resource range lies wholly after/before the search range; ne = not eq.
// Dates without a time zone are taken in UTC (the server's zone; HAPI uses the server's zone too).

table('date: precision, ranges, time zones and prefixes (Observation.effective)', [
  {
    q: 'Observation?date=2024',
    ids: ['d-year', 'd-day'],
    why: 'only ranges fully inside 2024; the period, the open period and the +02:00 value (2023 in UTC) are not',
  },
  { q: 'Observation?date=eq2024', ids: ['d-year', 'd-day'] },
  { q: 'Observation?date=2024-06', ids: ['d-day'], why: 'the year-precision value is wider than June' },
  { q: 'Observation?date=2024-06-15', ids: ['d-day'] },
  { q: 'Observation?date=2024-06-15T10:00:00Z', ids: [], why: 'a day is not contained in one second' },
  { q: 'Observation?date=2023-12-31T22:30:00Z', ids: ['d-tz'], why: 'the same instant as 2024-01-01T00:30:00+02:00' },
  { q: 'Observation?date=2024-01-01T00:30:00+02:00', ids: ['d-tz'] },
  { q: 'Observation?date=ge2023-12-31T22:30:00Z', ids: ['d-tz', 'd-year', 'd-day', 'd-period', 'd-open'] },
  {
    q: 'Observation?date=gt2023-12-31T22:30:00Z',
    ids: ['d-year', 'd-day', 'd-period', 'd-open'],
    why: 'd-tz is that very second, nothing of it is above',
  },
  { q: 'Observation?date=le2023-12-31T22:30:00Z', ids: ['d-tz', 'd-period', 'd-timing'] },
  { q: 'Observation?date=lt2023-12-31T22:30:00Z', ids: ['d-period', 'd-timing'] },
  { q: 'Observation?date=lt2024', ids: ['d-tz', 'd-period', 'd-timing'], why: 'ranges with a part before 2024' },
  {
    q: 'Observation?date=le2024',
    ids: ['d-tz', 'd-period', 'd-timing', 'd-year', 'd-day'],
    why: 'lt, or inside 2024; the open period starting 2024-03 is neither (spec; HAPI compares the low bound only and would include it)',
  },
  { q: 'Observation?date=gt2024', ids: ['d-open'], why: 'only the open period reaches past 2024' },
  {
    q: 'Observation?date=ge2024',
    ids: ['d-year', 'd-day', 'd-open'],
    why: 'gt, or inside 2024; the period 2023-12-15..2024-01-15 is neither (spec; HAPI compares the high bound only and would include it)',
  },
  {
    q: 'Observation?date=ge2024-01-01',
    ids: ['d-year', 'd-day', 'd-period', 'd-open'],
    why: 'the period straddling the new year has days above 2024-01-01',
  },
  { q: 'Observation?date=sa2023', ids: ['d-year', 'd-day', 'd-open'], why: 'starts after 2023 ends' },
  { q: 'Observation?date=eb2024', ids: ['d-tz', 'd-timing'], why: 'ends before 2024 starts' },
  { q: 'Observation?date=ne2024', ids: ['d-tz', 'd-period', 'd-open', 'd-timing'] },
  { q: 'Observation?date=ge2024-01-01&date=lt2024-03-01', ids: ['d-year', 'd-period'], why: 'AND by repetition' },
  { q: 'Observation?date=2024-06,2022', ids: ['d-day', 'd-timing'], why: 'OR by comma' },
  { q: 'Observation?date=ge2030', ids: ['d-open'], why: 'a period without end goes on for ever' },
  { q: 'Observation?date=2022-05', ids: ['d-timing'], why: 'a Timing is the range of its events' },
  { q: 'Observation?date=2022-05-02', ids: [], why: 'the Timing spans three days, not contained in one' },
  { q: 'Observation?date=ap2022-05-02', ids: ['d-timing'], why: 'ap: the ranges overlap (nothing else within any approximation)' },
  { q: 'Observation?date=lt2022-05-01T08:00:01Z', ids: ['d-timing'] },
  { q: 'Observation?date=lt2022-05-01T08:00:00Z', ids: [], why: 'the first event is at that second, not before it' },
  { q: 'Patient?birthdate=1970', ids: ['p-ref', 'sort-5'] },
  { q: 'Patient?birthdate=lt1980', ids: ['p-ref', 'sort-5'] },
  { q: 'Patient?birthdate=1990-01-01', ids: ['sort-1', 'sort-3'] },
  { q: 'Patient?birthdate=ge1990&birthdate=lt2001', ids: ['sort-1', 'sort-3', 'sort-4'] },
]);

// --- _lastUpdated ----------------------------------------------------------------------------------

table('_lastUpdated', [
  { q: `Patient?_lastUpdated=gt${BETWEEN}`, ids: [LATE], why: 'only the Patient written after the instant' },
  { q: `Patient?_lastUpdated=ge${BETWEEN}`, ids: [LATE] },
  { q: `Patient?_lastUpdated=lt${BETWEEN}`, ids: without(ALL_PATIENTS, LATE) },
  { q: `Patient?_lastUpdated=${LATE_UPDATED}`, ids: [LATE], why: 'eq at millisecond precision' },
  { q: `Patient?_lastUpdated=ge${LATE_UPDATED}&_lastUpdated=le${LATE_UPDATED}`, ids: [LATE] },
  { q: `Patient?_lastUpdated=gt${LATE_UPDATED}`, ids: [] },
  { q: 'Patient?_lastUpdated=lt2000', ids: [] },
  { q: `Organization?_lastUpdated=lt${BETWEEN}&_lastUpdated=gt2000`, ids: ['org-t1', 'org-t2', 'org-t3'] },
]);

// --- number --------------------------------------------------------------------------------------
// search.html#number: "100" stands for [99.5, 100.5) (its precision), "100.0" for [99.95, 100.05);
// lt/le/gt/ge compare with exactly 100; ne is not [99.5, 100.5); ap is within 10%.

table('number: implicit precision and prefixes (ChargeItem.factorOverride)', [
  { q: 'ChargeItem?factor-override=100', ids: ['ci-100', 'ci-1002', 'ci-995'], why: '100 means [99.5, 100.5): 100.2 matches, 100.6 does not' },
  { q: 'ChargeItem?factor-override=eq100', ids: ['ci-100', 'ci-1002', 'ci-995'] },
  { q: 'ChargeItem?factor-override=100.0', ids: ['ci-100'], why: '100.0 means [99.95, 100.05)' },
  { q: 'ChargeItem?factor-override=100.6', ids: ['ci-1006'] },
  { q: 'ChargeItem?factor-override=gt100', ids: ['ci-1002', 'ci-1006', 'ci-120'], why: 'greater than exactly 100' },
  { q: 'ChargeItem?factor-override=ge100', ids: ['ci-100', 'ci-1002', 'ci-1006', 'ci-120'] },
  { q: 'ChargeItem?factor-override=lt100', ids: ['ci-995', 'ci-994', 'ci-5'] },
  { q: 'ChargeItem?factor-override=le100', ids: ['ci-100', 'ci-995', 'ci-994', 'ci-5'] },
  { q: 'ChargeItem?factor-override=ne100', ids: ['ci-1006', 'ci-994', 'ci-120', 'ci-5'], why: 'not in [99.5, 100.5)' },
  { q: 'ChargeItem?factor-override=ap100', ids: ['ci-100', 'ci-1002', 'ci-1006', 'ci-995', 'ci-994'], why: 'within 10%' },
  { q: 'ChargeItem?factor-override=100.6,5', ids: ['ci-1006', 'ci-5'] },
  { q: 'ChargeItem?factor-override=gt99&factor-override=lt100.5', ids: ['ci-995', 'ci-994', 'ci-100', 'ci-1002'] },
  { q: 'ChargeItem?factor-override=5', ids: ['ci-5'] },
]);

// --- string --------------------------------------------------------------------------------------
// search.html#string: case- and accent-insensitive starts-with by default (HAPI's normalization:
// decompose, drop combining marks, upper-case); :exact is the whole string, case and accents
// included; :contains anywhere.

table('string: starts-with, normalization, :exact, :contains, escapes (Patient)', [
  { q: 'Patient?family=renee', ids: ['p-renee'] },
  { q: 'Patient?family=RENEE', ids: ['p-renee'] },
  { q: 'Patient?family=Renée', ids: ['p-renee'] },
  { q: 'Patient?family=rene', ids: ['p-renee', 'p-rene'], why: 'starts-with' },
  { q: 'Patient?family=René', ids: ['p-renee', 'p-rene'] },
  { q: 'Patient?family:exact=Renée', ids: ['p-renee'] },
  { q: 'Patient?family:exact=renée', ids: [], why: ':exact is case-sensitive' },
  { q: 'Patient?family:exact=Rene', ids: ['p-rene'], why: ':exact is the whole string, not a prefix' },
  { q: 'Patient?family:exact=Ren', ids: [] },
  { q: 'Patient?family:contains=ene', ids: ['p-renee', 'p-rene'] },
  { q: 'Patient?family:contains=ÉE', ids: ['p-renee'] },
  { q: 'Patient?family=muller', ids: ['p-muller'] },
  { q: 'Patient?family=MÜLLER', ids: ['p-muller'] },
  { q: 'Patient?family=mueller', ids: [] },
  { q: 'Patient?family=angstrom', ids: ['p-angstrom'] },
  { q: 'Patient?family=王', ids: ['p-wang'] },
  { q: 'Patient?given=小', ids: ['p-wang'] },
  { q: 'Patient?given=ann', ids: ['p-renee', 'p-angstrom', 'sort-4'] },
  { q: 'Patient?given=anne', ids: ['p-renee', 'p-angstrom'] },
  { q: 'Patient?given:exact=Anne', ids: ['p-renee'] },
  { q: 'Patient?name=anne', ids: ['p-renee', 'p-angstrom'], why: 'name covers given' },
  { q: 'Patient?name=refs', ids: ['p-ref'], why: 'name covers family' },
  { q: 'Patient?family=renee&given=anne', ids: ['p-renee'] },
  { q: 'Patient?family=renee&given=paul', ids: [] },
  { q: 'Patient?family=renee,muller', ids: ['p-renee', 'p-muller'] },
  { q: 'Patient?family=Smith\\, Jr', ids: ['p-comma'], why: '\\, is a comma in the value, not an OR' },
  { q: 'Patient?family=Smith, Jr', ids: ['p-comma', 'p-smithers'], why: 'an unescaped comma is an OR of "Smith" and " Jr"' },
  { q: 'Patient?family=back\\\\slash', ids: ['p-backslash'], why: '\\\\ is one backslash' },
  { q: 'Patient?family:contains=k\\\\s', ids: ['p-backslash'] },
  { q: 'Patient?address-city=san fran', ids: ['p-muller'] },
  { q: 'Patient?address-city=francisco', ids: [], why: 'starts-with the whole value, not a word' },
  { q: 'Patient?address-city:contains=francisco', ids: ['p-muller'] },
  { q: 'Patient?address=94110', ids: ['p-muller'], why: 'address covers postalCode' },
  { q: 'Patient?address-postalcode=941', ids: ['p-muller'] },
]);

// --- token -----------------------------------------------------------------------------------------

const MR = `${V2_0203}|MR`;
table('token: system|code, |code, system|, code, escapes (Patient.identifier, Patient.gender, Condition.code)', [
  { q: 'Condition?code=http://snomed.info/sct|44054006', ids: ['c-a'] },
  { q: 'Condition?code=|44054006', ids: ['c-d'], why: '|code: only codings without a system' },
  { q: 'Condition?code=44054006', ids: ['c-a', 'c-d'], why: 'code: any system or none' },
  { q: 'Condition?code=http://snomed.info/sct|', ids: ['c-a', 'c-b'], why: 'system|: any code of that system' },
  { q: 'Condition?code=http://snomed.info/sct|44054006,http://snomed.info/sct|38341003', ids: ['c-a', 'c-b'] },
  { q: 'Condition?code=HA', ids: ['c-c'] },
  { q: `Condition?category=${COND_CAT}|problem-list-item`, ids: ['c-a'] },
  { q: 'Condition?category=encounter-diagnosis', ids: ['c-b'] },
  { q: 'Condition?code=http://snomed.info/sct|44054006&category=encounter-diagnosis', ids: [] },
  { q: 'Patient?identifier=12345', ids: ['p-mrn', 'p-dl'] },
  { q: 'Patient?identifier=urn:oid:1.2.3|12345', ids: ['p-mrn'] },
  { q: 'Patient?identifier=12345&identifier=urn:dl|12345', ids: ['p-dl'] },
  { q: 'Patient?identifier=urn:esc|X\\,Y', ids: ['p-xy'], why: '\\, is a comma in the value' },
  { q: 'Patient?identifier=X\\,Y', ids: ['p-xy'] },
  { q: 'Patient?identifier=urn:esc|X,urn:esc|Y', ids: ['p-x'], why: 'an OR of X and Y' },
  { q: 'Patient?identifier=urn:esc|A\\|B', ids: ['p-pipe'], why: '\\| is a bar in the value, not the system separator' },
  { q: 'Patient?identifier=A\\|B', ids: ['p-pipe'] },
  { q: 'Patient?identifier=urn:esc|back\\\\slash', ids: ['p-backslash'] },
  { q: 'Patient?identifier=urn:esc|', ids: ['p-xy', 'p-x', 'p-pipe', 'p-backslash'] },
  { q: 'Patient?gender=male', ids: ['p-ref', 'p-rene', 'sort-2', 'sort-3'] },
  { q: 'Patient?gender=http://hl7.org/fhir/administrative-gender|female', ids: ['p-renee', 'sort-1', 'sort-4'] },
  { q: 'Patient?gender=female,other', ids: ['p-renee', 'sort-1', 'sort-4', 'sort-5'] },
]);

table('token modifiers: :not, :in, :not-in, :text, :of-type', [
  {
    q: 'Condition?code:not=http://snomed.info/sct|44054006',
    ids: ['c-b', 'c-c', 'c-d', 'c-e'],
    why: 'includes c-d (no system) and c-e (no code at all)',
  },
  { q: 'Condition?code:not=44054006', ids: ['c-b', 'c-c', 'c-e'] },
  { q: 'Patient?gender:not=male', ids: without(ALL_PATIENTS, 'p-ref', 'p-rene', 'sort-2', 'sort-3'), why: 'includes Patients without a gender' },
  { q: `Condition?code:in=${VS_URL}`, ids: ['c-a', 'c-b'], why: 'the ValueSet stored on the server; c-d has the code but no system' },
  { q: `Condition?code:not-in=${VS_URL}`, ids: ['c-c', 'c-d', 'c-e'], why: 'HAPI reading: resources without a code are not in the ValueSet' },
  { q: 'Condition?code:text=diabetes', ids: ['c-a'], why: 'Coding.display' },
  { q: 'Condition?code:text=high blood', ids: ['c-b'], why: 'CodeableConcept.text' },
  { q: 'Condition?code:text=HYPERTENSIVE', ids: ['c-b'], why: 'display, case-insensitive' },
  { q: 'Condition?code:text=head', ids: ['c-c'] },
  { q: `Patient?identifier:of-type=${MR}|12345`, ids: ['p-mrn'] },
  { q: `Patient?identifier:of-type=${V2_0203}|DL|12345`, ids: ['p-dl'] },
  { q: `Patient?identifier:of-type=${MR}|99999`, ids: [] },
  { q: `Patient?identifier:of-type=${MR}|12345,${V2_0203}|DL|12345`, ids: ['p-mrn', 'p-dl'] },
]);

// --- reference -------------------------------------------------------------------------------------

table('reference: id, Type/id, absolute URL, :Type, :identifier (Condition.subject)', [
  { q: 'Condition?subject=Patient/p-ref', ids: ['c-a', 'c-b'] },
  { q: 'Condition?subject=p-ref', ids: ['c-a', 'c-b'] },
  { q: 'Condition?subject:Patient=p-ref', ids: ['c-a', 'c-b'] },
  { q: 'Condition?subject:Group=p-ref', ids: [] },
  { q: 'Condition?patient=p-ref', ids: ['c-a', 'c-b'] },
  { q: 'Condition?patient=Patient/p-ref', ids: ['c-a', 'c-b'] },
  {
    q: 'Condition?subject=http://tributary.test/fhir/r4/Patient/p-ref',
    ids: ['c-a', 'c-b'],
    why: "an absolute URL on the server's own base is the local resource",
  },
  { q: 'Condition?subject=http://other.example/fhir/Patient/ext1', ids: ['c-d'] },
  { q: 'Condition?subject:identifier=urn:mrn|777', ids: ['c-e'] },
  { q: 'Condition?subject=Patient/p-ref,Patient/p-renee', ids: ['c-a', 'c-b', 'c-c'] },
  { q: 'Condition?subject=Patient/p-renee&code=http://example.org/local|HA', ids: ['c-c'] },
  { q: 'Condition?subject=Patient/nobody', ids: [] },
  { q: 'Observation?patient=p-ref&code=http://loinc.org|29463-7', ids: WEIGHTS },
]);

// --- quantity --------------------------------------------------------------------------------------
// search.html#quantity: value|system|code; with UCUM units the server compares canonical values
// (1000 g = 1 kg); a value without units matches any unit; value||code matches the unit code.

table('quantity: prefixes, units, UCUM conversion (Observation value-quantity)', [
  { q: `Observation?value-quantity=70|${UCUM}|kg`, ids: ['q-70kg', 'q-70000g'], why: '70000 g is 70 kg' },
  { q: `Observation?value-quantity=70000|${UCUM}|g`, ids: ['q-70kg', 'q-70000g'] },
  { q: `Observation?value-quantity=1|${UCUM}|kg`, ids: ['q-1000g', 'q-1kg'] },
  { q: `Observation?value-quantity=1000|${UCUM}|g`, ids: ['q-1000g', 'q-1kg'] },
  { q: `Observation?value-quantity=0.07|${UCUM}|kg`, ids: ['q-70g'] },
  { q: `Observation?value-quantity=70|${UCUM}|g`, ids: ['q-70g'] },
  { q: 'Observation?value-quantity=70', ids: ['q-70kg', 'q-70g', 'q-nounit'], why: 'no units: the value as stored, in any unit' },
  { q: 'Observation?value-quantity=70||kg', ids: ['q-70kg'], why: 'any system, unit code kg (no conversion)' },
  { q: `Observation?value-quantity=gt0.05|${UCUM}|kg`, ids: ['q-70kg', 'q-1000g', 'q-1kg', 'q-70000g', 'q-70g'] },
  { q: `Observation?value-quantity=lt2000|${UCUM}|g`, ids: ['q-1000g', 'q-1kg', 'q-70g'] },
  { q: `Observation?value-quantity=le1|${UCUM}|kg`, ids: ['q-1000g', 'q-1kg', 'q-70g'] },
  { q: `Observation?value-quantity=ge70|${UCUM}|kg`, ids: ['q-70kg', 'q-70000g'] },
  { q: `Observation?value-quantity=ne70|${UCUM}|kg`, ids: ['q-1000g', 'q-1kg', 'q-70g'], why: 'only masses are comparable with kg' },
  { q: `Observation?value-quantity=ap1000|${UCUM}|g`, ids: ['q-1000g', 'q-1kg'] },
  { q: `Observation?value-quantity=gt100|${UCUM}|mm[Hg]`, ids: ['q-sys', 'q-dia'], why: 'not 1000 g, whose number is above 100' },
  { q: `Observation?value-quantity=lt100|${UCUM}|mm[Hg]`, ids: ['q-sys2'] },
  { q: 'Observation?value-quantity=5', ids: ['q-esc'] },
  { q: `Observation?value-quantity=70|${UCUM}|kg,5`, ids: ['q-70kg', 'q-70000g', 'q-esc'] },
]);

// --- composite -------------------------------------------------------------------------------------

table('composite: code-value-quantity, component-code-value-quantity, the \\$ escape', [
  { q: `Observation?code-value-quantity=${LOINC}|8480-6$gt100`, ids: ['q-sys'], why: 'not q-dia (another code), not q-sys2 (95)' },
  { q: `Observation?code-value-quantity=${LOINC}|8480-6$lt100`, ids: ['q-sys2'] },
  { q: `Observation?code-value-quantity=${LOINC}|8462-4$110|${UCUM}|mm[Hg]`, ids: ['q-dia'] },
  { q: `Observation?code-value-quantity=${LOINC}|29463-7$1|${UCUM}|kg`, ids: ['q-1000g', 'q-1kg'] },
  { q: `Observation?code-value-quantity=${LOINC}|8480-6$gt100,${LOINC}|8462-4$gt100`, ids: ['q-sys', 'q-dia'] },
  { q: 'Observation?code-value-quantity=urn:fx|a\\$b$5', ids: ['q-esc'], why: '\\$ is a dollar in the code' },
  { q: `Observation?component-code-value-quantity=${LOINC}|8480-6$gt125`, ids: ['q-panel'] },
  // HAPI without combo indexes (and Tributary) match a composite's components per resource, not per
  // element: the 130 belongs to the other component, yet the panel matches. Documented in the README.
  {
    q: `Observation?component-code-value-quantity=${LOINC}|8462-4$gt125`,
    ids: ['q-panel'],
    why: 'components are matched per resource, as HAPI does',
  },
  { q: `Observation?component-code-value-quantity=${LOINC}|8462-4$lt90`, ids: ['q-panel'] },
]);

// --- uri -------------------------------------------------------------------------------------------

table('uri: exact, :below, :above (ValueSet.url)', [
  { q: 'ValueSet?url=http://acme.org/fhir/ValueSet/a', ids: ['vs-a'], why: 'exact, not a prefix' },
  { q: 'ValueSet?url=http://acme.org/fhir/ValueSet', ids: [] },
  { q: 'ValueSet?url:below=http://acme.org/fhir/', ids: ['vs-a', 'vs-ab'] },
  { q: 'ValueSet?url:below=http://acme.org/fhir/ValueSet/a', ids: ['vs-a', 'vs-ab'] },
  { q: 'ValueSet?url:below=http://acme.org/', ids: ['vs-a', 'vs-ab', 'vs-x'] },
  { q: 'ValueSet?url:above=http://acme.org/fhir/ValueSet/a/b/c', ids: ['vs-a', 'vs-ab'] },
  { q: 'ValueSet?url:above=http://acme.org/fhir/ValueSet/a', ids: ['vs-a'] },
  { q: `ValueSet?url=http://acme.org/fhir/ValueSet/a,${VS_URL}`, ids: ['vs-a', 'vs-dm'] },
]);

// --- _id and meta ----------------------------------------------------------------------------------

table('_id, _tag, _profile, _security, _source', [
  { q: 'Organization?_id=org-t1,org-t3', ids: ['org-t1', 'org-t3'] },
  { q: 'Organization?_id=org-t1&_id=org-t3', ids: [], why: 'AND of two ids' },
  { q: 'Organization?_tag=urn:tags|red', ids: ['org-t1'] },
  { q: 'Organization?_tag=red', ids: ['org-t1', 'org-t2'] },
  { q: 'Organization?_tag=urn:tags|red,urn:tags|blue', ids: ['org-t1', 'org-t2'] },
  { q: 'Organization?_tag=urn:tags|red&_tag=urn:other|red', ids: [] },
  { q: 'Organization?_tag=urn:tags|blue&_tag=urn:other|red', ids: ['org-t2'] },
  { q: 'Organization?_tag:not=urn:tags|red', ids: ['org-t2', 'org-t3'] },
  { q: 'Organization?_profile=http://example.org/StructureDefinition/org-a', ids: ['org-t1'] },
  { q: `Organization?_security=${CONF}|R`, ids: ['org-t1'] },
  { q: 'Organization?_security=N', ids: ['org-t2'] },
  { q: 'Organization?_source=http://source.test/app-a', ids: ['org-t1'] },
  { q: 'Organization?_source=http://source.test/app-a,http://source.test/app-b', ids: ['org-t1', 'org-t2'] },
]);

// --- :missing --------------------------------------------------------------------------------------

table(':missing on every type', [
  { q: 'Patient?family:missing=true', ids: NO_FAMILY, why: 'string' },
  { q: 'Patient?family:missing=false', ids: without(ALL_PATIENTS, ...NO_FAMILY) },
  { q: 'Patient?gender:missing=true', ids: without(ALL_PATIENTS, ...WITH_GENDER), why: 'token' },
  { q: 'Patient?gender:missing=false', ids: WITH_GENDER },
  { q: 'Condition?code:missing=true', ids: ['c-e'] },
  { q: 'Condition?code:missing=false', ids: ['c-a', 'c-b', 'c-c', 'c-d'] },
  { q: 'Condition?category:missing=true', ids: ['c-c', 'c-d', 'c-e'] },
  { q: 'Patient?birthdate:missing=true', ids: without(ALL_PATIENTS, ...WITH_BIRTHDATE), why: 'date' },
  { q: 'Observation?date:missing=true', ids: QTY_IDS },
  { q: 'Observation?date:missing=false', ids: DATE_IDS },
  { q: 'ChargeItem?factor-override:missing=true', ids: ['ci-none'], why: 'number' },
  {
    q: 'ChargeItem?factor-override:missing=false',
    ids: without(
      CHARGE_ITEMS.map((c) => c.id),
      'ci-none',
    ),
  },
  { q: 'Observation?value-quantity:missing=true', ids: [...DATE_IDS, 'q-panel'], why: 'quantity' },
  { q: 'Observation?value-quantity:missing=false', ids: without(QTY_IDS, 'q-panel') },
  { q: 'Observation?subject:missing=true', ids: DATE_IDS, why: 'reference' },
  { q: 'Observation?subject:missing=false', ids: QTY_IDS },
  { q: 'ValueSet?url:missing=true', ids: ['vs-nourl'], why: 'uri' },
  { q: 'ValueSet?url:missing=false', ids: ['vs-dm', 'vs-a', 'vs-ab', 'vs-x'] },
  { q: 'Patient?family:missing=true&identifier=urn:esc|', ids: ['p-xy', 'p-x', 'p-pipe'] },
]);

// --- _sort -----------------------------------------------------------------------------------------
// Every row has keys that leave no ties, so the order is fully determined.

const SORT = 'Patient?identifier=urn:sort|';
table('_sort: each type, ascending and descending, several keys', [
  { q: `${SORT}&_sort=family,given`, ids: ['sort-2', 'sort-5', 'sort-4', 'sort-1', 'sort-3'], ordered: true, why: 'string' },
  { q: `${SORT}&_sort=-family,given`, ids: ['sort-3', 'sort-4', 'sort-1', 'sort-2', 'sort-5'], ordered: true },
  { q: `${SORT}&_sort=-family,-given`, ids: ['sort-3', 'sort-1', 'sort-4', 'sort-5', 'sort-2'], ordered: true },
  { q: `${SORT}&_sort=birthdate,_id`, ids: ['sort-5', 'sort-2', 'sort-1', 'sort-3', 'sort-4'], ordered: true, why: 'date, ties by _id' },
  { q: `${SORT}&_sort=-birthdate,_id`, ids: ['sort-4', 'sort-1', 'sort-3', 'sort-2', 'sort-5'], ordered: true },
  { q: `${SORT}&_sort=-birthdate,-_id`, ids: ['sort-4', 'sort-3', 'sort-1', 'sort-2', 'sort-5'], ordered: true },
  { q: `${SORT}&_sort=birthdate,-family`, ids: ['sort-5', 'sort-2', 'sort-3', 'sort-1', 'sort-4'], ordered: true },
  {
    q: `${SORT}&_sort=gender,family,given`,
    ids: ['sort-4', 'sort-1', 'sort-2', 'sort-3', 'sort-5'],
    ordered: true,
    why: 'token: female < male < other',
  },
  { q: `${SORT}&_sort=-identifier`, ids: ['sort-5', 'sort-4', 'sort-3', 'sort-2', 'sort-1'], ordered: true },
  { q: `${SORT}&_sort=_id`, ids: ['sort-1', 'sort-2', 'sort-3', 'sort-4', 'sort-5'], ordered: true },
  { q: `${SORT}&_sort=-_id`, ids: ['sort-5', 'sort-4', 'sort-3', 'sort-2', 'sort-1'], ordered: true },
  {
    q: 'ChargeItem?factor-override=ge0&_sort=factor-override',
    ids: ['ci-5', 'ci-994', 'ci-995', 'ci-100', 'ci-1002', 'ci-1006', 'ci-120'],
    ordered: true,
    why: 'number',
  },
  {
    q: 'ChargeItem?factor-override=ge0&_sort=-factor-override',
    ids: ['ci-120', 'ci-1006', 'ci-1002', 'ci-100', 'ci-995', 'ci-994', 'ci-5'],
    ordered: true,
  },
  { q: `Observation?code=${LOINC}|8480-6,${LOINC}|8462-4&_sort=value-quantity`, ids: ['q-sys2', 'q-dia', 'q-sys'], ordered: true, why: 'quantity' },
  { q: `Observation?code=${LOINC}|8480-6,${LOINC}|8462-4&_sort=-value-quantity`, ids: ['q-sys', 'q-dia', 'q-sys2'], ordered: true },
  { q: 'ValueSet?_id=vs-a,vs-ab,vs-x,vs-dm&_sort=url', ids: ['vs-a', 'vs-ab', 'vs-x', 'vs-dm'], ordered: true, why: 'uri' },
  { q: 'ValueSet?_id=vs-a,vs-ab,vs-x,vs-dm&_sort=-url', ids: ['vs-dm', 'vs-x', 'vs-ab', 'vs-a'], ordered: true },
  // Reference: ordered by the reference (Patient/p-ref before Patient/p-renee).
  { q: 'Condition?subject=Patient/p-ref,Patient/p-renee&_sort=subject,_id', ids: ['c-a', 'c-b', 'c-c'], ordered: true, why: 'reference' },
  { q: 'Condition?subject=Patient/p-ref,Patient/p-renee&_sort=-subject,_id', ids: ['c-c', 'c-a', 'c-b'], ordered: true },
]);

t.test('_sort with ties is deterministic: the same order on every call and across pages', async (t) => {
  const q = `${SORT}&_sort=birthdate`;
  const a = await searchAll(app, url(q));
  const b = await searchAll(app, url(q));
  const paged = await searchAll(app, url(`${q}&_count=1`));
  t.equal(a.status, 200, a.body.slice(0, 300));
  t.same(sorted(a.ids), sorted(['sort-1', 'sort-2', 'sort-3', 'sort-4', 'sort-5']), 'all five');
  t.same(a.ids.slice(0, 2), ['sort-5', 'sort-2'], 'the untied ones first');
  t.same(sorted(a.ids.slice(2, 4)), ['sort-1', 'sort-3'], 'the tie (1990-01-01) in the middle');
  t.equal(a.ids[4], 'sort-4');
  t.same(b.ids, a.ids, 'a second call gives the same order');
  t.same(paged.ids, a.ids, 'pages of one give the same order');
});

t.test('the tables name only fixture ids', async (t) => {
  const known = new Set<string>([
    ...ALL_PATIENTS,
    ...DATE_IDS,
    ...QTY_IDS,
    ...CONDITIONS.map((c) => c.id),
    ...CHARGE_ITEMS.map((c) => c.id),
    ...VALUE_SETS.map((v) => v.id),
    ...ORGANIZATIONS.map((o) => o.id),
  ]);
  t.equal(
    known.size,
    ALL_PATIENTS.length + DATE_IDS.length + QTY_IDS.length + CONDITIONS.length + CHARGE_ITEMS.length + VALUE_SETS.length + ORGANIZATIONS.length,
    'fixture ids are unique',
  );
  const unknown = ALL_ROWS.flatMap((r) => r.ids.filter((id) => !known.has(id)).map((id) => `${r.q}: ${id}`));
  t.same(unknown, [], 'no row expects an id that is not a fixture');
  const r = await searchAll(app, url('Patient?_count=100'));
  t.same(sorted(r.ids), sorted(ALL_PATIENTS), 'every Patient is stored');
});
