/**
 * US Core 6.1 conformance, single-patient API: the searches each US Core profile's server
 * CapabilityStatement requires (SHALL support), on a small patient record, each also with
 * `_revinclude=Provenance:target`, and with the patient both as a bare id and as Patient/[id].
 * A second patient with the same data (same codes, same dates) must never appear in the first
 * one's results, nor the first in the second's.
 * See: https://hl7.org/fhir/us/core/STU6.1/CapabilityStatement-us-core-server.html
 */
import t, { type Test } from 'tap';
import { buildTestApp } from '../helper.ts';
import {
  COND_CAT,
  entries,
  includeEntries,
  type Json,
  LOINC,
  matchEntries,
  SCT,
  send,
  sorted,
  typedId,
  UCUM,
  upsertAll,
  url,
} from './search-support.ts';

const app = await buildTestApp(t);

const OBS_CAT = 'http://terminology.hl7.org/CodeSystem/observation-category';
const V2_0074 = 'http://terminology.hl7.org/CodeSystem/v2-0074';
const DOC_CAT = 'http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category';
const CP_CAT = 'http://hl7.org/fhir/us/core/CodeSystem/careplan-category';
const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';
const MRN = 'http://hospital.smarthealthit.org';
const NPI = 'http://hl7.org/fhir/sid/us-npi';

const cc = (system: string, code: string, display?: string): Json => ({ coding: [{ system, code, ...(display ? { display } : {}) }] });
const ref = (reference: string): Json => ({ reference });

// --- Shared resources (not in any patient's compartment) ------------------------------------------

const SHARED: Json[] = [
  {
    resourceType: 'Organization',
    id: 'org1',
    active: true,
    name: 'Acme Health Clinic',
    address: [{ line: ['123 Main St'], city: 'Springfield', state: 'MA', postalCode: '01103', country: 'US' }],
  },
  {
    resourceType: 'Organization',
    id: 'org-payer',
    active: true,
    name: 'Better Health Insurance',
    address: [{ city: 'Boston', state: 'MA', postalCode: '02110' }],
  },
  {
    resourceType: 'Practitioner',
    id: 'pr1',
    identifier: [{ system: NPI, value: '9941339108' }],
    name: [{ family: 'Careful', given: ['Adam'], prefix: ['Dr.'] }],
  },
  {
    resourceType: 'Practitioner',
    id: 'pr2',
    identifier: [{ system: NPI, value: '1234567893' }],
    name: [{ family: 'Nightingale', given: ['Florence'] }],
  },
  {
    resourceType: 'Provenance',
    id: 'prov-shared',
    target: [ref('Organization/org1'), ref('Practitioner/pr1')],
    recorded: '2023-01-01T00:00:00Z',
    agent: [{ who: ref('Organization/org1') }],
  },
];

// --- One patient's record ------------------------------------------------------------------------

/** Provenance id (without prefix) → the resources (Type/id without prefix) it targets. */
const PROV_TARGETS: Record<string, string[]> = {
  'prov-a': ['Patient/patient', 'Observation/obs-weight', 'Condition/cond-dm', 'DocumentReference/doc1', 'MedicationRequest/mr1', 'Encounter/enc1'],
  'prov-b': [
    'Observation/obs-bp',
    'DiagnosticReport/dr-lab',
    'ServiceRequest/sr1',
    'Procedure/proc1',
    'CarePlan/cp1',
    'CareTeam/ct1',
    'AllergyIntolerance/ai1',
    'Coverage/cov1',
    'Device/dev1',
    'Goal/goal1',
    'Immunization/imm1',
    'MedicationDispense/md1',
    'Medication/med1',
  ],
};

interface Person {
  n: 1 | 2;
  identifier: string;
  family: string;
  given: string[];
  gender: string;
}
const PEOPLE: Person[] = [
  { n: 1, identifier: '1032702', family: 'Shaw', given: ['Amy', 'V.'], gender: 'female' },
  { n: 2, identifier: '1032799', family: 'Baxter', given: ['Amy'], gender: 'male' },
];

function record(p: Person): Json[] {
  const px = `p${p.n}`;
  const id = (s: string) => `${px}-${s}`;
  const subject = ref(`Patient/${id('patient')}`);
  const obs = (name: string, category: string, code: string, effectiveDateTime: string, value: Json): Json => ({
    resourceType: 'Observation',
    id: id(name),
    status: 'final',
    category: [cc(OBS_CAT, category)],
    code: cc(LOINC, code),
    subject,
    effectiveDateTime,
    ...value,
  });
  const out: Json[] = [
    {
      resourceType: 'Patient',
      id: id('patient'),
      identifier: [{ system: MRN, value: p.identifier }],
      name: [{ family: p.family, given: p.given }],
      gender: p.gender,
      birthDate: '1987-02-20',
      managingOrganization: ref('Organization/org1'),
    },
    obs('obs-bp', 'vital-signs', '85354-9', '2023-05-01T10:00:00Z', {
      component: [
        { code: cc(LOINC, '8480-6'), valueQuantity: { value: 120, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
        { code: cc(LOINC, '8462-4'), valueQuantity: { value: 80, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
      ],
    }),
    obs('obs-weight', 'vital-signs', '29463-7', '2023-06-01T10:00:00Z', { valueQuantity: { value: 70, unit: 'kg', system: UCUM, code: 'kg' } }),
    obs('obs-hba1c', 'laboratory', '4548-4', '2023-05-15T08:00:00Z', { valueQuantity: { value: 6.1, unit: '%', system: UCUM, code: '%' } }),
    obs('obs-glucose', 'laboratory', '2339-0', '2023-07-01T08:00:00Z', { valueQuantity: { value: 95, unit: 'mg/dL', system: UCUM, code: 'mg/dL' } }),
    obs('obs-smoking', 'social-history', '72166-2', '2023-01-10', { valueCodeableConcept: cc(SCT, '266919005', 'Never smoked tobacco') }),
    {
      resourceType: 'Condition',
      id: id('cond-dm'),
      clinicalStatus: cc('http://terminology.hl7.org/CodeSystem/condition-clinical', 'active'),
      verificationStatus: cc('http://terminology.hl7.org/CodeSystem/condition-ver-status', 'confirmed'),
      category: [cc(COND_CAT, 'problem-list-item')],
      code: cc(SCT, '44054006', 'Diabetes mellitus type 2'),
      subject,
      onsetDateTime: '2019-03-01',
    },
    {
      resourceType: 'Condition',
      id: id('cond-enc'),
      clinicalStatus: cc('http://terminology.hl7.org/CodeSystem/condition-clinical', 'resolved'),
      verificationStatus: cc('http://terminology.hl7.org/CodeSystem/condition-ver-status', 'confirmed'),
      category: [cc(COND_CAT, 'encounter-diagnosis')],
      code: cc(SCT, '10509002', 'Acute bronchitis'),
      subject,
      encounter: ref(`Encounter/${id('enc1')}`),
      abatementDateTime: '2023-05-20',
    },
    {
      resourceType: 'DiagnosticReport',
      id: id('dr-lab'),
      status: 'final',
      category: [cc(V2_0074, 'LAB')],
      code: cc(LOINC, '24323-8', 'Comprehensive metabolic panel'),
      subject,
      effectiveDateTime: '2023-05-15T09:00:00Z',
      result: [ref(`Observation/${id('obs-hba1c')}`)],
    },
    {
      resourceType: 'DiagnosticReport',
      id: id('dr-img'),
      status: 'final',
      category: [cc(LOINC, 'LP29684-5', 'Radiology')],
      code: cc(LOINC, '18748-4', 'Diagnostic imaging study'),
      subject,
      effectiveDateTime: '2023-08-01T14:00:00Z',
    },
    {
      resourceType: 'DocumentReference',
      id: id('doc1'),
      status: 'current',
      type: cc(LOINC, '34117-2', 'History and physical note'),
      category: [cc(DOC_CAT, 'clinical-note')],
      subject,
      date: '2023-05-01T12:00:00Z',
      content: [{ attachment: { contentType: 'text/plain', data: 'SGlzdG9yeSBhbmQgcGh5c2ljYWw=' } }],
    },
    {
      resourceType: 'DocumentReference',
      id: id('doc2'),
      status: 'current',
      type: cc(LOINC, '11506-3', 'Progress note'),
      category: [cc(DOC_CAT, 'clinical-note')],
      subject,
      date: '2023-09-01T12:00:00Z',
      content: [{ attachment: { contentType: 'text/plain', data: 'UHJvZ3Jlc3Mgbm90ZQ==' } }],
    },
    {
      resourceType: 'Encounter',
      id: id('enc1'),
      status: 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
      type: [cc(SCT, '185349003', 'Encounter for check up')],
      subject,
      period: { start: '2023-05-01T09:00:00Z', end: '2023-05-01T11:00:00Z' },
    },
    {
      resourceType: 'Encounter',
      id: id('enc2'),
      status: 'in-progress',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' },
      subject,
      period: { start: '2023-07-01T08:00:00Z' },
    },
    { resourceType: 'Medication', id: id('med1'), code: cc(RXNORM, '860975', 'metformin hydrochloride 500 MG') },
    {
      resourceType: 'MedicationRequest',
      id: id('mr1'),
      status: 'active',
      intent: 'order',
      medicationReference: ref(`Medication/${id('med1')}`),
      subject,
      authoredOn: '2023-05-01',
    },
    {
      resourceType: 'MedicationRequest',
      id: id('mr2'),
      status: 'completed',
      intent: 'order',
      medicationCodeableConcept: cc(RXNORM, '197361', 'amlodipine 5 MG'),
      subject,
      authoredOn: '2022-01-01',
    },
    {
      resourceType: 'MedicationRequest',
      id: id('mr3'),
      status: 'stopped',
      intent: 'plan',
      medicationReference: ref(`Medication/${id('med1')}`),
      subject,
      authoredOn: '2021-01-01',
    },
    {
      resourceType: 'MedicationDispense',
      id: id('md1'),
      status: 'completed',
      medicationReference: ref(`Medication/${id('med1')}`),
      subject,
      authorizingPrescription: [ref(`MedicationRequest/${id('mr1')}`)],
    },
    {
      resourceType: 'ServiceRequest',
      id: id('sr1'),
      status: 'active',
      intent: 'order',
      category: [cc(SCT, '108252007', 'Laboratory procedure')],
      code: cc(LOINC, '24323-8'),
      subject,
      authoredOn: '2023-05-10T10:00:00Z',
    },
    {
      resourceType: 'ServiceRequest',
      id: id('sr2'),
      status: 'completed',
      intent: 'order',
      category: [cc(SCT, '363679005', 'Imaging')],
      code: cc(LOINC, '18748-4'),
      subject,
      authoredOn: '2023-08-01T10:00:00Z',
    },
    {
      resourceType: 'Procedure',
      id: id('proc1'),
      status: 'completed',
      code: cc(SCT, '80146002', 'Appendectomy'),
      subject,
      performedDateTime: '2023-03-03T10:00:00Z',
    },
    {
      resourceType: 'Procedure',
      id: id('proc2'),
      status: 'completed',
      code: cc(SCT, '73761001', 'Colonoscopy'),
      subject,
      performedPeriod: { start: '2023-09-10T09:00:00Z', end: '2023-09-11T09:00:00Z' },
    },
    { resourceType: 'CarePlan', id: id('cp1'), status: 'active', intent: 'plan', category: [cc(CP_CAT, 'assess-plan')], subject },
    { resourceType: 'CarePlan', id: id('cp2'), status: 'completed', intent: 'plan', category: [cc(SCT, '734163000', 'Care plan')], subject },
    { resourceType: 'CareTeam', id: id('ct1'), status: 'active', subject, participant: [{ member: ref('Practitioner/pr1') }] },
    { resourceType: 'CareTeam', id: id('ct2'), status: 'inactive', subject },
    {
      resourceType: 'AllergyIntolerance',
      id: id('ai1'),
      clinicalStatus: cc('http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', 'active'),
      verificationStatus: cc('http://terminology.hl7.org/CodeSystem/allergyintolerance-verification', 'confirmed'),
      code: cc(SCT, '91936005', 'Allergy to penicillin'),
      patient: subject,
    },
    { resourceType: 'Coverage', id: id('cov1'), status: 'active', beneficiary: subject, payor: [ref('Organization/org-payer')] },
    { resourceType: 'Device', id: id('dev1'), type: cc(SCT, '14106009', 'Cardiac pacemaker'), patient: subject },
    { resourceType: 'Goal', id: id('goal1'), lifecycleStatus: 'active', description: { text: 'Lose weight' }, subject },
    {
      resourceType: 'Immunization',
      id: id('imm1'),
      status: 'completed',
      vaccineCode: cc('http://hl7.org/fhir/sid/cvx', '140'),
      patient: subject,
      occurrenceDateTime: '2022-10-01',
    },
  ];
  for (const [prov, targets] of Object.entries(PROV_TARGETS)) {
    out.push({
      resourceType: 'Provenance',
      id: id(prov),
      target: targets.map((tg) => ref(tg.replace('/', `/${px}-`))),
      recorded: '2023-10-01T00:00:00Z',
      agent: [{ who: ref('Organization/org1') }],
    });
  }
  return out;
}

await upsertAll(app, [...SHARED, ...record(PEOPLE[0]), ...record(PEOPLE[1])]);

// --- The searches ----------------------------------------------------------------------------------

/** A patient-scoped search: `${type}?patient=<the patient>&${params}`; ids and includes without the pN- prefix. */
interface PatientRow {
  type: string;
  params: string;
  ids: string[];
  /** Included by the row's own _include ("Type/id" without prefix). */
  include?: string[];
  why?: string;
}

const PATIENT_ROWS: PatientRow[] = [
  // Observation: patient+code, patient+category, patient+category+date (each comparator), patient+code+date.
  { type: 'Observation', params: `code=${LOINC}|29463-7`, ids: ['obs-weight'] },
  { type: 'Observation', params: `code=${LOINC}|29463-7,${LOINC}|4548-4`, ids: ['obs-weight', 'obs-hba1c'] },
  { type: 'Observation', params: `category=${OBS_CAT}|vital-signs`, ids: ['obs-bp', 'obs-weight'] },
  { type: 'Observation', params: 'category=laboratory', ids: ['obs-hba1c', 'obs-glucose'] },
  { type: 'Observation', params: `category=${OBS_CAT}|social-history`, ids: ['obs-smoking'] },
  { type: 'Observation', params: `category=${OBS_CAT}|vital-signs&date=ge2023-06-01`, ids: ['obs-weight'] },
  { type: 'Observation', params: `category=${OBS_CAT}|vital-signs&date=ge2023-05-01T10:00:00Z`, ids: ['obs-bp', 'obs-weight'] },
  { type: 'Observation', params: `category=${OBS_CAT}|vital-signs&date=gt2023-05-01T10:00:00Z`, ids: ['obs-weight'] },
  { type: 'Observation', params: `category=${OBS_CAT}|vital-signs&date=le2023-05-01T10:00:00Z`, ids: ['obs-bp'] },
  { type: 'Observation', params: `category=${OBS_CAT}|vital-signs&date=lt2023-06-01T10:00:00Z`, ids: ['obs-bp'] },
  { type: 'Observation', params: `category=${OBS_CAT}|vital-signs&date=lt2023-05-01`, ids: [] },
  { type: 'Observation', params: `category=${OBS_CAT}|laboratory&date=ge2023-05-01&date=lt2023-06-01`, ids: ['obs-hba1c'] },
  { type: 'Observation', params: `category=${OBS_CAT}|laboratory&date=gt2023-05-31`, ids: ['obs-glucose'] },
  { type: 'Observation', params: `category=${OBS_CAT}|laboratory&date=le2023-07-01`, ids: ['obs-hba1c', 'obs-glucose'] },
  { type: 'Observation', params: `category=${OBS_CAT}|social-history&date=2023-01-10`, ids: ['obs-smoking'] },
  { type: 'Observation', params: `code=${LOINC}|4548-4&date=ge2023-05-15`, ids: ['obs-hba1c'] },
  { type: 'Observation', params: `code=${LOINC}|4548-4&date=lt2023-05-15`, ids: [] },
  // Condition: patient, patient+category (and clinical-status, code).
  { type: 'Condition', params: '', ids: ['cond-dm', 'cond-enc'] },
  { type: 'Condition', params: `category=${COND_CAT}|problem-list-item`, ids: ['cond-dm'] },
  { type: 'Condition', params: 'category=encounter-diagnosis', ids: ['cond-enc'] },
  { type: 'Condition', params: 'clinical-status=active', ids: ['cond-dm'] },
  { type: 'Condition', params: `code=${SCT}|10509002`, ids: ['cond-enc'] },
  // DiagnosticReport: patient, patient+category, patient+code, patient+category+date.
  { type: 'DiagnosticReport', params: '', ids: ['dr-lab', 'dr-img'] },
  { type: 'DiagnosticReport', params: `category=${V2_0074}|LAB`, ids: ['dr-lab'] },
  { type: 'DiagnosticReport', params: `code=${LOINC}|18748-4`, ids: ['dr-img'] },
  { type: 'DiagnosticReport', params: `category=${V2_0074}|LAB&date=ge2023-05-01`, ids: ['dr-lab'] },
  { type: 'DiagnosticReport', params: `category=${V2_0074}|LAB&date=lt2023-05-01`, ids: [] },
  { type: 'DiagnosticReport', params: `category=${LOINC}|LP29684-5&date=gt2023-07-31`, ids: ['dr-img'] },
  // DocumentReference: patient, patient+type, patient+category, patient+category+date.
  { type: 'DocumentReference', params: '', ids: ['doc1', 'doc2'] },
  { type: 'DocumentReference', params: `type=${LOINC}|11506-3`, ids: ['doc2'] },
  { type: 'DocumentReference', params: `category=${DOC_CAT}|clinical-note`, ids: ['doc1', 'doc2'] },
  { type: 'DocumentReference', params: `category=${DOC_CAT}|clinical-note&date=ge2023-06-01`, ids: ['doc2'] },
  { type: 'DocumentReference', params: 'category=clinical-note&date=lt2023-06-01', ids: ['doc1'] },
  // Encounter: patient, date+patient.
  { type: 'Encounter', params: '', ids: ['enc1', 'enc2'] },
  { type: 'Encounter', params: 'date=ge2023-06-01', ids: ['enc2'] },
  { type: 'Encounter', params: 'date=lt2023-06-01', ids: ['enc1'] },
  { type: 'Encounter', params: 'date=2023-05-01', ids: ['enc1'] },
  { type: 'Encounter', params: 'date=ge2023-05-01&date=le2023-05-31', ids: ['enc1'] },
  { type: 'Encounter', params: 'date=ge2024-01-01', ids: ['enc2'], why: 'the encounter in progress has no end' },
  // MedicationRequest: patient+intent, patient+intent+status, with _include=MedicationRequest:medication.
  { type: 'MedicationRequest', params: 'intent=order', ids: ['mr1', 'mr2'] },
  { type: 'MedicationRequest', params: 'intent=order,plan', ids: ['mr1', 'mr2', 'mr3'] },
  { type: 'MedicationRequest', params: 'intent=order&status=active', ids: ['mr1'] },
  { type: 'MedicationRequest', params: 'intent=order&status=active,completed', ids: ['mr1', 'mr2'] },
  { type: 'MedicationRequest', params: 'intent=order&status=stopped', ids: [] },
  { type: 'MedicationRequest', params: 'intent=plan&status=stopped', ids: ['mr3'] },
  { type: 'MedicationRequest', params: 'intent=order&_include=MedicationRequest:medication', ids: ['mr1', 'mr2'], include: ['Medication/med1'] },
  {
    type: 'MedicationRequest',
    params: 'intent=order&status=active,completed&_include=MedicationRequest:medication',
    ids: ['mr1', 'mr2'],
    include: ['Medication/med1'],
  },
  { type: 'MedicationRequest', params: 'intent=plan&_include=MedicationRequest:medication', ids: ['mr3'], include: ['Medication/med1'] },
  {
    type: 'MedicationRequest',
    params: 'intent=order&status=completed&_include=MedicationRequest:medication',
    ids: ['mr2'],
    include: [],
    why: 'a medicationCodeableConcept: nothing to include',
  },
  // ServiceRequest: patient, patient+code, patient+category, patient+category+authored.
  { type: 'ServiceRequest', params: '', ids: ['sr1', 'sr2'] },
  { type: 'ServiceRequest', params: `code=${LOINC}|24323-8`, ids: ['sr1'] },
  { type: 'ServiceRequest', params: `category=${SCT}|363679005`, ids: ['sr2'] },
  { type: 'ServiceRequest', params: `category=${SCT}|108252007&authored=ge2023-05-01`, ids: ['sr1'] },
  { type: 'ServiceRequest', params: `category=${SCT}|108252007&authored=gt2023-06-01`, ids: [] },
  // Procedure: patient, patient+date.
  { type: 'Procedure', params: '', ids: ['proc1', 'proc2'] },
  { type: 'Procedure', params: 'date=ge2023-06-01', ids: ['proc2'] },
  { type: 'Procedure', params: 'date=lt2023-06-01', ids: ['proc1'] },
  { type: 'Procedure', params: 'date=2023-09', ids: ['proc2'] },
  { type: 'Procedure', params: 'date=2023-09-10', ids: [], why: 'the procedure spans two days' },
  // CarePlan: patient+category (and status); CareTeam: patient+status.
  { type: 'CarePlan', params: `category=${CP_CAT}|assess-plan`, ids: ['cp1'] },
  { type: 'CarePlan', params: `category=${CP_CAT}|assess-plan&status=active`, ids: ['cp1'] },
  { type: 'CarePlan', params: `category=${CP_CAT}|assess-plan&status=completed`, ids: [] },
  { type: 'CareTeam', params: 'status=active', ids: ['ct1'] },
  { type: 'CareTeam', params: 'status=active,inactive', ids: ['ct1', 'ct2'] },
  // By patient.
  { type: 'AllergyIntolerance', params: '', ids: ['ai1'] },
  { type: 'AllergyIntolerance', params: 'clinical-status=active', ids: ['ai1'] },
  { type: 'Coverage', params: '', ids: ['cov1'] },
  { type: 'Device', params: '', ids: ['dev1'] },
  { type: 'Goal', params: '', ids: ['goal1'] },
  { type: 'Immunization', params: '', ids: ['imm1'] },
  { type: 'MedicationDispense', params: '', ids: ['md1'] },
];

/** Searches that are not by patient: the query, and the matches as "Type/id" (ids of a record written pN-...). */
interface OtherRow {
  q: string;
  match: string[];
}
const OTHER_ROWS: OtherRow[] = [
  { q: 'Patient?_id=p1-patient', match: ['Patient/p1-patient'] },
  { q: 'Patient?_id=p2-patient', match: ['Patient/p2-patient'] },
  { q: `Patient?identifier=${MRN}|1032702`, match: ['Patient/p1-patient'] },
  { q: `Patient?identifier=${MRN}|1032799`, match: ['Patient/p2-patient'] },
  { q: 'Patient?identifier=1032702', match: ['Patient/p1-patient'] },
  { q: 'Patient?name=shaw', match: ['Patient/p1-patient'] },
  { q: 'Patient?name=baxter', match: ['Patient/p2-patient'] },
  { q: 'Patient?name=amy', match: ['Patient/p1-patient', 'Patient/p2-patient'] },
  { q: 'Patient?birthdate=1987-02-20&name=shaw', match: ['Patient/p1-patient'] },
  { q: 'Patient?birthdate=1987-02-20&name=baxter', match: ['Patient/p2-patient'] },
  { q: 'Patient?birthdate=1987-02-21&name=shaw', match: [] },
  { q: 'Patient?gender=female&name=amy', match: ['Patient/p1-patient'] },
  { q: 'Patient?gender=male&name=amy', match: ['Patient/p2-patient'] },
  { q: 'Patient?gender=male&name=shaw', match: [] },
  { q: 'DocumentReference?_id=p1-doc1', match: ['DocumentReference/p1-doc1'] },
  { q: 'DocumentReference?_id=p2-doc2', match: ['DocumentReference/p2-doc2'] },
  { q: 'Encounter?_id=p1-enc1', match: ['Encounter/p1-enc1'] },
  { q: 'Encounter?_id=p2-enc2', match: ['Encounter/p2-enc2'] },
  { q: 'ServiceRequest?_id=p1-sr1', match: ['ServiceRequest/p1-sr1'] },
  { q: 'ServiceRequest?_id=p2-sr2', match: ['ServiceRequest/p2-sr2'] },
  { q: 'Organization?name=acme', match: ['Organization/org1'] },
  { q: 'Organization?name=Acme Health', match: ['Organization/org1'] },
  { q: 'Organization?name:contains=health', match: ['Organization/org1', 'Organization/org-payer'] },
  { q: 'Organization?address=springfield', match: ['Organization/org1'] },
  { q: 'Organization?address=01103', match: ['Organization/org1'] },
  { q: 'Organization?address=boston', match: ['Organization/org-payer'] },
  { q: 'Organization?address-city=springfield', match: ['Organization/org1'] },
  { q: 'Practitioner?name=careful', match: ['Practitioner/pr1'] },
  { q: 'Practitioner?name=adam', match: ['Practitioner/pr1'] },
  { q: 'Practitioner?name=nightingale', match: ['Practitioner/pr2'] },
  { q: `Practitioner?identifier=${NPI}|9941339108`, match: ['Practitioner/pr1'] },
  { q: 'Practitioner?identifier=9941339108', match: ['Practitioner/pr1'] },
];

/** The Provenances (Type/id) targeting any of the matches: what _revinclude=Provenance:target adds. */
function provenancesOf(matches: string[]): string[] {
  const out: string[] = [];
  for (const m of matches) {
    if (m === 'Organization/org1' || m === 'Practitioner/pr1') out.push('Provenance/prov-shared');
    const rec = /^([A-Za-z]+)\/(p[12])-(.+)$/.exec(m);
    if (!rec) continue;
    for (const [prov, targets] of Object.entries(PROV_TARGETS)) if (targets.includes(`${rec[1]}/${rec[3]}`)) out.push(`Provenance/${rec[2]}-${prov}`);
  }
  return [...new Set(out)];
}

async function check(t: Test, q: string, match: string[], include: string[], other?: string): Promise<void> {
  const res = await send(app, { method: 'GET', url: url(q) });
  t.equal(res.statusCode, 200, `status 200 (${res.body.slice(0, 300)})`);
  let b: Json = {};
  try {
    b = res.json();
  } catch {
    // reported by the status check
  }
  t.same(sorted(matchEntries(b).map(typedId)), sorted(match), 'exactly these matches');
  t.same(sorted(includeEntries(b).map(typedId)), sorted(include), 'exactly these included');
  if (other)
    t.same(
      entries(b)
        .map(typedId)
        .filter((id) => id.includes(`/${other}-`)),
      [],
      `nothing of the other patient (${other})`,
    );
}

for (const p of PEOPLE) {
  const px = `p${p.n}`;
  const other = p.n === 1 ? 'p2' : 'p1';
  const pid = `${px}-patient`;
  const typed = (type: string, ids: string[]) => ids.map((i) => `${type}/${px}-${i}`);
  const incl = (ids: string[] = []) => ids.map((i) => i.replace('/', `/${px}-`));
  t.test(`patient ${px}: the US Core searches by patient`, async (t) => {
    for (const row of PATIENT_ROWS) {
      const match = typed(row.type, row.ids);
      const rest = row.params ? `&${row.params}` : '';
      for (const form of [pid, `Patient/${pid}`]) {
        const q = `${row.type}?patient=${form}${rest}`;
        t.test(
          `${q} → {${row.ids.join(', ')}}${row.include?.length ? ` + {${row.include.join(', ')}}` : ''}${row.why ? `  (${row.why})` : ''}`,
          async (t) => {
            await check(t, q, match, incl(row.include), other);
          },
        );
      }
      const q = `${row.type}?patient=${pid}${rest}&_revinclude=Provenance:target`;
      const include = [...incl(row.include), ...provenancesOf(match)];
      t.test(`${q} → {${row.ids.join(', ')}} + {${include.join(', ')}}`, async (t) => {
        await check(t, q, match, include, other);
      });
    }
  });
}

t.test('the searches not by patient (Patient, _id, Organization, Practitioner), with and without _revinclude=Provenance:target', async (t) => {
  for (const row of OTHER_ROWS) {
    t.test(`${row.q} → {${row.match.join(', ')}}`, async (t) => {
      await check(t, row.q, row.match, []);
    });
    const q = `${row.q}&_revinclude=Provenance:target`;
    const include = provenancesOf(row.match);
    t.test(`${q} → {${row.match.join(', ')}} + {${include.join(', ')}}`, async (t) => {
      await check(t, q, row.match, include);
    });
  }
});

t.test('the fixture: every record resource is stored, and the rows name only stored ids', async (t) => {
  const all = [...SHARED, ...record(PEOPLE[0]), ...record(PEOPLE[1])].map((r) => `${r.resourceType}/${r.id}`);
  const known = new Set(all);
  t.equal(known.size, all.length, 'ids are unique');
  const named = [
    ...PATIENT_ROWS.flatMap((r) => [...r.ids.map((i) => `${r.type}/p1-${i}`), ...(r.include ?? []).map((i) => i.replace('/', '/p1-'))]),
    ...OTHER_ROWS.flatMap((r) => r.match),
    ...Object.values(PROV_TARGETS)
      .flat()
      .map((i) => i.replace('/', '/p1-')),
  ];
  t.same(
    named.filter((id) => !known.has(id)),
    [],
    'no row names an id that is not a fixture',
  );
  const res = await send(app, { method: 'GET', url: url('Provenance?_count=100') });
  t.equal(res.statusCode, 200);
  t.equal(matchEntries(res.json()).length, 5, 'five Provenances stored');
});
