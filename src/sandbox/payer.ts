/**
 * A payer's records, as CMS Blue Button 2.0 serves them (ehr-behaviour.md §9, CARIN BB-ish): per
 * beneficiary a Patient, three Coverages (Part A, Part B, Part D) and ExplanationOfBenefits —
 * carrier (professional) claims for office visits, outpatient (institutional) claims for
 * emergency visits and colonoscopies, and PDE (pharmacy) claims for each prescription. The claims
 * are derived from the clinical record src/sandbox/generate.ts makes for the same seed, so the
 * payer sees the same visits a health system does. Valid R4 (the unit test validates them).
 *
 *   generatePayerSystem(opts: GenerateOptions): GeneratedSystem
 *
 * As at Blue Button: ids like `-20140000000001` (Patient), `part-a--20140000000001` (Coverage),
 * `carrier--10000000001234` (EOB); providers and the insurer are logical references (NPI, "CMS"),
 * not resources of their own; nothing references outside a beneficiary's records.
 */
import { createHash } from 'node:crypto';
import type {
  CodeableConcept,
  Coverage,
  Encounter,
  ExplanationOfBenefit,
  MedicationRequest,
  Patient,
  Practitioner,
  Resource,
} from '@medplum/fhirtypes';
import { generateSystem, type GeneratedSystem, type GenerateOptions } from './generate.ts';

const BB = 'https://bluebutton.cms.gov/resources';
const NPI = 'http://hl7.org/fhir/sid/us-npi';
const MBI = 'http://hl7.org/fhir/sid/us-mbi';
const ICD10 = 'http://hl7.org/fhir/sid/icd-10-cm';
const HCPCS = `${BB}/codesystem/hcpcs`;
const CARIN = 'http://hl7.org/fhir/us/carin-bb/StructureDefinition';
const TERMINOLOGY = 'http://terminology.hl7.org/CodeSystem';
const DAY = 86_400_000;
/** The last day a claim can be processed: the generator's records end at 2026-01-01. */
const LAST_DAY = Date.UTC(2025, 11, 31);

const cc = (system: string, code: string, display?: string): CodeableConcept => ({ coding: [{ system, code, ...(display ? { display } : {}) }] });
const usd = (value: number) => ({ value, currency: 'USD' as const });
const date = (iso: string | undefined): string => (iso ?? '').slice(0, 10);

/** A number in [min, max) from the key: the same claim, the same amounts. */
function amount(key: string, min: number, max: number): number {
  const u = createHash('sha256').update(key).digest().readUInt32LE(0) / 2 ** 32;
  return Math.round((min + u * (max - min)) * 100) / 100;
}

/** ICD-10-CM for the SNOMED codes the generator's diagnoses use; what is not here is coded R69 (illness, unspecified). */
const ICD: Record<string, [string, string]> = {
  '38341003': ['I10', 'Essential (primary) hypertension'],
  '55822004': ['E78.5', 'Hyperlipidemia, unspecified'],
  '44054006': ['E11.9', 'Type 2 diabetes mellitus without complications'],
  '714628002': ['R73.03', 'Prediabetes'],
  '195967001': ['J45.909', 'Unspecified asthma, uncomplicated'],
  '40055000': ['J32.9', 'Chronic sinusitis, unspecified'],
  '444814009': ['J01.90', 'Acute sinusitis, unspecified'],
  '195662009': ['J02.9', 'Acute pharyngitis, unspecified'],
  '43878008': ['J02.0', 'Streptococcal pharyngitis'],
  '10509002': ['J20.9', 'Acute bronchitis, unspecified'],
  '44465007': ['S93.409A', 'Sprain of unspecified ligament of unspecified ankle, initial encounter'],
  '233604007': ['J18.9', 'Pneumonia, unspecified organism'],
};

/** By the generator's encounter type (SNOMED): the claim it makes and the HCPCS code billed. */
const VISITS: Record<string, { claim: 'carrier' | 'outpatient'; hcpcs: string; display: string; revenue?: string }> = {
  '185349003': { claim: 'carrier', hcpcs: '99397', display: 'Periodic preventive medicine, established patient, 65 years and older' },
  '185347001': { claim: 'carrier', hcpcs: '99214', display: 'Office or other outpatient visit, established patient, moderate' },
  '185345009': { claim: 'carrier', hcpcs: '99213', display: 'Office or other outpatient visit, established patient, low' },
  '32485007': { claim: 'carrier', hcpcs: '99223', display: 'Initial hospital inpatient care, high' },
  '50849002': { claim: 'outpatient', hcpcs: '99284', display: 'Emergency department visit, moderate', revenue: '0450' },
  '371883000': {
    claim: 'outpatient',
    hcpcs: 'G0121',
    display: 'Colorectal cancer screening; colonoscopy on individual not meeting criteria for high risk',
    revenue: '0750',
  },
};

const EOB_TYPES = {
  carrier: { bb: 'CARRIER', claim: 'professional', display: 'Professional', profile: 'C4BB-ExplanationOfBenefit-Professional-NonClinician' },
  outpatient: { bb: 'OUTPATIENT', claim: 'institutional', display: 'Institutional', profile: 'C4BB-ExplanationOfBenefit-Outpatient-Institutional' },
  pde: { bb: 'PDE', claim: 'pharmacy', display: 'Pharmacy', profile: 'C4BB-ExplanationOfBenefit-Pharmacy' },
} as const;

/** A Medicare Beneficiary Identifier's shape: 11 characters, no S, L, O, I, B or Z. */
function mbi(key: string): string {
  const bytes = createHash('sha256').update(key).digest();
  const letters = 'ACDEFGHJKMNPQRTUVWXY';
  const digit = (i: number) => String(bytes[i] % 10);
  const letter = (i: number) => letters[bytes[i] % letters.length];
  return `${1 + (bytes[0] % 9)}${letter(1)}${digit(2)}${letter(3)}${letter(4)}${digit(5)}${letter(6)}${letter(7)}${digit(8)}${digit(9)}${letter(10)}`;
}

function beneficiary(source: Patient, id: string, mbiValue: string): Patient {
  return {
    resourceType: 'Patient',
    id,
    meta: { profile: [`${CARIN}/C4BB-Patient`] },
    extension: source.extension,
    identifier: [
      {
        type: cc(`${TERMINOLOGY}/v2-0203`, 'MC', "Patient's Medicare number"),
        system: MBI,
        value: mbiValue,
      },
    ],
    name: source.name,
    gender: source.gender,
    birthDate: source.birthDate,
    address: source.address?.map(({ city, state, postalCode, country }) => ({ city, state, postalCode, country })),
  };
}

function coverage(part: 'A' | 'B' | 'D', patientId: string, mbiValue: string, start: string): Coverage {
  return {
    resourceType: 'Coverage',
    id: `part-${part.toLowerCase()}-${patientId}`,
    meta: { profile: [`${CARIN}/C4BB-Coverage`] },
    status: 'active',
    type: cc('http://terminology.hl7.org/CodeSystem/v3-ActCode', 'SUBSIDIZ', 'subsidized health program'),
    subscriberId: mbiValue,
    beneficiary: { reference: `Patient/${patientId}` },
    relationship: cc(`${TERMINOLOGY}/subscriber-relationship`, 'self', 'Self'),
    period: { start },
    payor: [{ identifier: { value: 'CMS' }, display: 'Centers for Medicare and Medicaid Services' }],
    class: [
      { type: cc(`${TERMINOLOGY}/coverage-class`, 'group', 'Group'), value: 'Medicare', name: 'Medicare' },
      { type: cc(`${TERMINOLOGY}/coverage-class`, 'plan', 'Plan'), value: `Part ${part}`, name: `Part ${part}` },
    ],
  };
}

interface ClaimInput {
  kind: keyof typeof EOB_TYPES;
  claimId: string;
  patientId: string;
  part: 'A' | 'B' | 'D';
  start: string;
  end: string;
  provider: ExplanationOfBenefit['provider'];
  diagnoses: [string, string][];
  item: { coding: CodeableConcept; quantity?: number; revenue?: string };
  charge: number;
}

function eob(c: ClaimInput): ExplanationOfBenefit {
  const t = EOB_TYPES[c.kind];
  const paid = Math.round(c.charge * 0.8 * 100) / 100;
  const adjudication = [
    { category: cc(`${TERMINOLOGY}/adjudication`, 'submitted', 'Submitted Amount'), amount: usd(c.charge) },
    { category: cc(`${TERMINOLOGY}/adjudication`, 'benefit', 'Benefit Amount'), amount: usd(paid) },
  ];
  return {
    resourceType: 'ExplanationOfBenefit',
    id: `${c.kind}--${c.claimId}`,
    meta: { profile: [`${CARIN}/${t.profile}`] },
    identifier: [
      {
        type: cc('http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType', 'uc', 'Unique Claim ID'),
        system: `${BB}/variables/clm_id`,
        value: c.claimId,
      },
    ],
    status: 'active',
    type: {
      coding: [
        { system: `${BB}/codesystem/eob-type`, code: t.bb },
        { system: `${TERMINOLOGY}/claim-type`, code: t.claim, display: t.display },
      ],
    },
    use: 'claim',
    patient: { reference: `Patient/${c.patientId}` },
    billablePeriod: { start: c.start, end: c.end },
    created: new Date(Math.min(Date.parse(c.end) + 14 * DAY, LAST_DAY)).toISOString().replace('.000Z', 'Z'),
    insurer: { identifier: { value: 'CMS' } },
    provider: c.provider,
    outcome: 'complete',
    ...(c.diagnoses.length
      ? {
          diagnosis: c.diagnoses.map(([code, display], i) => ({
            sequence: i + 1,
            diagnosisCodeableConcept: cc(ICD10, code, display),
            type: [cc(`${TERMINOLOGY}/ex-diagnosistype`, i === 0 ? 'principal' : 'secondary')],
          })),
        }
      : {}),
    insurance: [{ focal: true, coverage: { reference: `Coverage/part-${c.part.toLowerCase()}-${c.patientId}` } }],
    item: [
      {
        sequence: 1,
        ...(c.diagnoses.length ? { diagnosisSequence: [1] } : {}),
        ...(c.item.revenue ? { revenue: cc('https://www.nubc.org/CodeSystem/RevenueCodes', c.item.revenue) } : {}),
        productOrService: c.item.coding,
        servicedDate: c.start,
        ...(c.item.quantity ? { quantity: { value: c.item.quantity } } : {}),
        adjudication,
      },
    ],
    total: adjudication.map((a) => ({ category: a.category, amount: a.amount })),
    payment: { amount: usd(paid) },
  };
}

/** The payer's view of the system the options describe: the same patients and sign-ins, Blue Button's records. */
export function generatePayerSystem(opts: GenerateOptions): GeneratedSystem {
  const clinical = generateSystem(opts);
  const npiOf = new Map(
    clinical.shared
      .filter((r): r is Practitioner => r.resourceType === 'Practitioner')
      .map((p) => [
        `Practitioner/${p.id}`,
        { identifier: { system: NPI, value: p.identifier?.[0].value ?? '' }, display: `${p.name?.[0].given?.[0]} ${p.name?.[0].family}` },
      ]),
  );
  let claims = 0;
  const patients = clinical.patients.map((p, n) => {
    const source = p.resources[0] as Patient;
    const patientId = `-${20140000000001 + n}`;
    const mbiValue = mbi(`${opts.seed}:${p.personKey}`);
    const birth = Date.parse(source.birthDate ?? '1950-01-01');
    // Entitled at 65, or (younger) on disability since 2019; the records start no earlier than 2016.
    const entitled = new Date(Math.max(birth + 65 * 365.25 * DAY, Date.UTC(2016, 0, 1))).toISOString().slice(0, 7);
    const start = `${Date.parse(`${entitled}-01`) > LAST_DAY ? '2019-01' : entitled}-01`;
    const out: Resource[] = [
      beneficiary(source, patientId, mbiValue),
      coverage('A', patientId, mbiValue, start),
      coverage('B', patientId, mbiValue, start),
      coverage('D', patientId, mbiValue, start),
    ];
    const diagnosisOf = new Map(
      p.resources
        .filter((r) => r.resourceType === 'Condition')
        .map((r) => [`Condition/${r.id}`, (r as { code?: CodeableConcept }).code?.coding?.[0].code ?? '']),
    );
    for (const r of p.resources) {
      if (r.resourceType === 'Encounter') {
        const e = r as Encounter;
        const visit = VISITS[e.type?.[0].coding?.[0].code ?? ''];
        if (!visit || !e.period?.start || date(e.period.start) < start) continue;
        const diagnoses = (e.reasonReference ?? []).map(
          (ref) => ICD[diagnosisOf.get(ref.reference ?? '') ?? ''] ?? (['R69', 'Illness, unspecified'] as [string, string]),
        );
        const claimId = String(10000000000000 + ++claims * 7919);
        out.push(
          eob({
            kind: visit.claim,
            claimId,
            patientId,
            part: 'B',
            start: date(e.period.start),
            end: date(e.period.end ?? e.period.start),
            provider: npiOf.get(e.participant?.[0].individual?.reference ?? '') ?? { identifier: { system: NPI, value: '1234567893' } },
            diagnoses: diagnoses.length
              ? diagnoses
              : visit.hcpcs === '99397'
                ? [['Z00.00', 'Encounter for general adult medical examination without abnormal findings']]
                : [['R69', 'Illness, unspecified']],
            item: { coding: cc(HCPCS, visit.hcpcs, visit.display), revenue: visit.revenue },
            charge: amount(claimId, visit.claim === 'outpatient' ? 600 : 90, visit.claim === 'outpatient' ? 2400 : 320),
          }),
        );
      }
      if (r.resourceType === 'MedicationRequest') {
        const m = r as MedicationRequest;
        if (!m.authoredOn || date(m.authoredOn) < start || !m.medicationCodeableConcept) continue;
        const claimId = String(10000000000000 + ++claims * 7919);
        out.push(
          eob({
            kind: 'pde',
            claimId,
            patientId,
            part: 'D',
            start: date(m.authoredOn),
            end: date(m.authoredOn),
            provider: npiOf.get(m.requester?.reference ?? '') ?? { identifier: { system: NPI, value: '1234567893' } },
            diagnoses: [],
            item: { coding: { coding: m.medicationCodeableConcept.coding }, quantity: 30 },
            charge: amount(claimId, 4, 180),
          }),
        );
      }
    }
    return { personKey: p.personKey, username: p.username, password: p.password, resources: out };
  });
  return { shared: [], patients };
}
