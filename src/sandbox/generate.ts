/**
 * Deterministic generator of realistic US Core R4 patient records, which fill the built-in sandbox
 * health systems (simulated EHRs the product connects to and imports from). The same options give
 * byte-identical output: every random choice comes from a PRNG (sfc32) seeded by a SHA-256 of the seed,
 * and every date is counted back from a fixed anchor, 2026-01-01, never from today.
 *
 * A patient's record: the Patient (us-core-patient), problem-list Conditions with their
 * MedicationRequests (us-core-medicationrequest, renewed at each check-up), AllergyIntolerances, and per
 * year of history about four Encounters (a yearly check-up with lipid, CBC and metabolic panels,
 * follow-ups of chronic problems, acute and emergency visits, now and then a hospital stay or a
 * colonoscopy), each with eight vital signs (blood pressure as us-core-blood-pressure), a clinical note
 * (DocumentReference) and its Procedures and diagnoses; Immunizations (influenza most autumns, COVID-19
 * in 2021, Tdap, pneumococcal after 65); and one step count (LOINC 66334-4) a day for the 30 days before
 * the anchor. The system's Organization, Practitioners and Locations are in `shared`.
 *
 * Size: about 50 resources per patient per year of history, plus some 35 that do not grow with it:
 * about 290 with the default 5 years; `years: 20` gives a record of about 1,050 for benchmarks.
 *
 * The shared person is the same human at every system that includes them: demographics from a fixed
 * seed, and a few facts recorded alike everywhere (hypertension with its onset date, an allergy to
 * penicillin, one influenza shot), for de-duplication to find. The rest of their record is the system's.
 */
import { createHash } from 'node:crypto';
import type {
  Binary,
  Address,
  AllergyIntolerance,
  CodeableConcept,
  Condition,
  DiagnosticReport,
  DocumentReference,
  Encounter,
  Extension,
  Immunization,
  Location,
  MedicationRequest,
  Observation,
  ObservationReferenceRange,
  Organization,
  Patient,
  Practitioner,
  Procedure,
  Quantity,
  Reference,
  Resource,
} from '@medplum/fhirtypes';
import { noteHtml, notePdf } from './notes.ts';

export interface GenerateOptions {
  /** Any string; the same seed gives the same records. */
  seed: string;
  /** Number of patients (besides the shared person, see below). */
  patients: number;
  /** Prefix of every resource id of this system, e.g. 'nv' → 'nv-pat-1', keeps ids distinct across systems. FHIR ids: [A-Za-z0-9-.]{1,64}. */
  idPrefix: string;
  /** The health system's name, used for its Organization (the managing organization) and its identifiers' system URIs. */
  systemName: string;
  /** Include the shared person (the same human at every system that includes them, under this system's ids). Default true. */
  sharedPerson?: boolean;
  /** Roughly how many years of history per patient (default 5); more years → more encounters and observations. */
  years?: number;
  /** Ways real vendors' records differ (the simulated vendors' sandboxes), each off by default. */
  vendor?: VendorVariations;
}

/**
 * Ways real vendors' records differ, for the simulated vendors (ehr-behaviour.md). They are applied
 * to each patient's finished record with randomness of their own (from the seed and the patient),
 * so that without them the output is exactly what it was, and with them the rest of it is too.
 * Practice-prefixed ids, as athena's (`a-80000.E-…`, §3 "IDs"), need no option: the idPrefix gives them.
 */
export interface VendorVariations {
  /**
   * The share (0 to 1) of each type's resources whose status is entered-in-error: athena returns
   * such records (§3 "Entered-in-error": 89 of 491 Observations), Oracle too (§2).
   */
  enteredInError?: Partial<Record<'Observation' | 'DiagnosticReport' | 'DocumentReference', number>>;
  /** With enteredInError: an Observation's values removed and its dataAbsentReason `masked` (§2 Oracle "Entered-in-error"). */
  maskEnteredInError?: boolean;
  /**
   * Each note as Binary renditions (owned by the patient) that its DocumentReference's attachments
   * link by a relative `Binary/<id>` url, in these formats, instead of inline text/plain data
   * (§1 Epic "DocumentReference / Binary", §2 Oracle "Binary / notes").
   */
  noteBinaries?: ('text/html' | 'application/pdf')[];
  /**
   * Observations of two more categories: social-history (tobacco smoking status at each check-up)
   * and survey (a PHQ-2 score with each depression screening), which Epic's category fan-out and
   * Oracle's first page reach (§1 "Observation categories", §2 "`_count`").
   */
  moreCategories?: boolean;
  /**
   * The first Procedure of the first ordinary patient (`${idPrefix}-proc-1-1`) without its status,
   * which R4 requires: what makes Oracle fail a whole search with a 500 (§2 "Whole-search failure").
   * Not valid FHIR on purpose; the sandbox writes its records without validation.
   */
  procedureWithoutStatus?: boolean;
}

export interface SandboxPatient {
  /** Stable across systems for the shared person ('shared'), else `${idPrefix}-${n}`. */
  personKey: string;
  /** The login for the sandbox's sign-in page: given name and family name in lowercase letters. Unique within one system. */
  username: string;
  /** The username followed by 2026 (the anchor year): at least 8 characters. */
  password: string;
  /** Every resource of the patient's record: the Patient first, then the rest. */
  resources: Resource[];
}

export interface GeneratedSystem {
  /** Resources outside any patient's compartment that the records reference: the Organization of the system, Practitioners, Locations. */
  shared: Resource[];
  patients: SandboxPatient[];
}

/** The LOINC code the product's docs use for daily steps. */
export const STEPS_LOINC = '66334-4';

// ---------------------------------------------------------------------------------------------
// Randomness and time

interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** An integer in [min, max]. */
  int(min: number, max: number): number;
  real(min: number, max: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
}

/** sfc32: small, fast, and good enough for plausible data; JavaScript's own Math.random cannot be seeded. */
function sfc32(a: number, b: number, c: number, d: number): () => number {
  return () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
}

function createRng(seed: string): Rng {
  const digest = createHash('sha256').update(seed).digest();
  const next = sfc32(digest.readUInt32LE(0), digest.readUInt32LE(4), digest.readUInt32LE(8), digest.readUInt32LE(12));
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    real: (min, max) => min + next() * (max - min),
    chance: (p) => next() < p,
    pick: (items) => items[Math.floor(next() * items.length)],
  };
}

const MINUTE = 60_000;
const DAY = 86_400_000;
const YEAR = 365 * DAY;
/** Every date is relative to this instant, so that the output does not depend on when it is generated. */
const ANCHOR = Date.UTC(2026, 0, 1);
const ANCHOR_YEAR = 2026;

const isoDate = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
const isoDateTime = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
const round = (value: number, decimals: number): number => Math.round(value * 10 ** decimals) / 10 ** decimals;
const clamp = (value: number, min: number, max: number): number => Math.min(max, Math.max(min, value));
const yearsBetween = (from: number, to: number): number => (to - from) / (365.25 * DAY);

/** Moves a Saturday or Sunday back to the Friday before: clinics see patients on weekdays. */
function weekday(ms: number): number {
  const day = new Date(ms).getUTCDay();
  return day === 6 ? ms - DAY : day === 0 ? ms - 2 * DAY : ms;
}

// ---------------------------------------------------------------------------------------------
// Code systems and catalogs

const SNOMED = 'http://snomed.info/sct';
const LOINC = 'http://loinc.org';
const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';
const CVX = 'http://hl7.org/fhir/sid/cvx';
const UCUM = 'http://unitsofmeasure.org';
const NPI = 'http://hl7.org/fhir/sid/us-npi';
const OMB = 'urn:oid:2.16.840.1.113883.6.238';
const TERMINOLOGY = 'http://terminology.hl7.org/CodeSystem';
const US_CORE = 'http://hl7.org/fhir/us/core/StructureDefinition';

interface Code {
  code: string;
  display: string;
}

function concept(system: string, { code, display }: Code, text?: string): CodeableConcept {
  return { coding: [{ system, code, display }], ...(text ? { text } : {}) };
}

const ref = <T extends Resource>(resource: T): Reference<T> => ({ reference: `${resource.resourceType}/${resource.id}` });
const quantity = (value: number, unit: string, code = unit): Quantity => ({ value, unit, system: UCUM, code });

interface City {
  city: string;
  state: string;
  zips: readonly string[];
  areaCode: string;
}

const CITIES: readonly City[] = [
  { city: 'Reno', state: 'NV', zips: ['89501', '89502', '89509'], areaCode: '775' },
  { city: 'Las Vegas', state: 'NV', zips: ['89101', '89104', '89117'], areaCode: '702' },
  { city: 'Sacramento', state: 'CA', zips: ['95814', '95816', '95822'], areaCode: '916' },
  { city: 'Portland', state: 'OR', zips: ['97201', '97205', '97214'], areaCode: '503' },
  { city: 'Boise', state: 'ID', zips: ['83702', '83704', '83706'], areaCode: '208' },
  { city: 'Denver', state: 'CO', zips: ['80202', '80205', '80210'], areaCode: '303' },
  { city: 'Phoenix', state: 'AZ', zips: ['85004', '85006', '85016'], areaCode: '602' },
  { city: 'Austin', state: 'TX', zips: ['78701', '78704', '78745'], areaCode: '512' },
  { city: 'Albuquerque', state: 'NM', zips: ['87102', '87106', '87110'], areaCode: '505' },
  { city: 'Madison', state: 'WI', zips: ['53703', '53705', '53711'], areaCode: '608' },
  { city: 'Minneapolis', state: 'MN', zips: ['55401', '55403', '55408'], areaCode: '612' },
  { city: 'Columbus', state: 'OH', zips: ['43201', '43206', '43215'], areaCode: '614' },
  { city: 'Raleigh', state: 'NC', zips: ['27601', '27603', '27608'], areaCode: '919' },
];

const STREETS = ['Main St', 'Oak Ave', 'Maple Dr', 'Cedar Ln', 'Park Blvd', 'Washington St', 'Lake Rd', 'Hillcrest Ave', 'Pine St', 'River Rd', 'Elm St', 'Highland Ave', 'Mesa Dr', 'Willow Way'];

/** Names go with the race and ethnicity a person is recorded with, loosely, as they do in the US. */
interface Heritage {
  weight: number;
  race: Code;
  hispanic: boolean;
  female: readonly string[];
  male: readonly string[];
  family: readonly string[];
}

const HERITAGES: readonly Heritage[] = [
  {
    weight: 55,
    race: { code: '2106-3', display: 'White' },
    hispanic: false,
    female: ['Emily', 'Sarah', 'Hannah', 'Megan', 'Claire', 'Olivia', 'Abigail', 'Laura'],
    male: ['James', 'Ethan', 'Ryan', 'Connor', 'Daniel', 'Henry', 'Lucas', 'Owen'],
    family: ['Smith', 'Miller', 'Anderson', 'Olson', 'Murphy', 'Sullivan', 'Kowalski', 'Schmidt', 'Baker', 'Clark'],
  },
  {
    weight: 19,
    race: { code: '2106-3', display: 'White' },
    hispanic: true,
    female: ['Maria', 'Sofia', 'Isabella', 'Camila', 'Lucia', 'Elena', 'Gabriela', 'Valeria'],
    male: ['Jose', 'Luis', 'Carlos', 'Mateo', 'Diego', 'Miguel', 'Javier', 'Andres'],
    family: ['Garcia', 'Martinez', 'Rodriguez', 'Hernandez', 'Lopez', 'Gonzalez', 'Perez', 'Sanchez', 'Ramirez', 'Torres'],
  },
  {
    weight: 13,
    race: { code: '2054-5', display: 'Black or African American' },
    hispanic: false,
    female: ['Aaliyah', 'Imani', 'Keisha', 'Nia', 'Grace', 'Jasmine', 'Monique', 'Adaeze'],
    male: ['Jamal', 'Malik', 'Darnell', 'Andre', 'Kwame', 'Marcus', 'Terrence', 'Isaiah'],
    family: ['Johnson', 'Williams', 'Jackson', 'Harris', 'Robinson', 'Washington', 'Okafor', 'Mensah'],
  },
  {
    weight: 7,
    race: { code: '2028-9', display: 'Asian' },
    hispanic: false,
    female: ['Mei', 'Priya', 'Yuna', 'Linh', 'Aiko', 'Anjali', 'Jiwoo', 'Hana'],
    male: ['Wei', 'Arjun', 'Minho', 'Hiroshi', 'Duc', 'Raj', 'Kenji', 'Jun'],
    family: ['Nguyen', 'Kim', 'Chen', 'Patel', 'Wong', 'Tanaka', 'Singh', 'Park'],
  },
  {
    weight: 3,
    race: { code: '1002-5', display: 'American Indian or Alaska Native' },
    hispanic: false,
    female: ['Tara', 'Shawna', 'Dana', 'Renee'],
    male: ['Shawn', 'Derek', 'Travis', 'Cody'],
    family: ['Begay', 'Yazzie', 'Benally', 'Tsosie'],
  },
  {
    weight: 3,
    race: { code: '2076-8', display: 'Native Hawaiian or Other Pacific Islander' },
    hispanic: false,
    female: ['Leilani', 'Malia', 'Kalena', 'Noelani'],
    male: ['Kekoa', 'Keoni', 'Makoa', 'Sione'],
    family: ['Kealoha', 'Kahale', 'Fonoti', 'Tuilagi'],
  },
];

const HISPANIC: Code = { code: '2135-2', display: 'Hispanic or Latino' };
const NOT_HISPANIC: Code = { code: '2186-5', display: 'Not Hispanic or Latino' };

interface MedicationDef extends Code {
  /** How the note names it. */
  short: string;
  dosage: string;
  asNeeded: boolean;
}

const LISINOPRIL: MedicationDef = { code: '314076', display: 'lisinopril 10 MG Oral Tablet', short: 'lisinopril 10 mg daily', dosage: 'Take 1 tablet by mouth once daily.', asNeeded: false };
const ATORVASTATIN: MedicationDef = { code: '617311', display: 'atorvastatin 40 MG Oral Tablet', short: 'atorvastatin 40 mg at bedtime', dosage: 'Take 1 tablet by mouth once daily at bedtime.', asNeeded: false };
const METFORMIN: MedicationDef = { code: '860975', display: '24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet', short: 'metformin ER 500 mg daily', dosage: 'Take 1 tablet by mouth once daily with the evening meal.', asNeeded: false };
const ALBUTEROL: MedicationDef = { code: '745679', display: '200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler', short: 'albuterol inhaler as needed', dosage: 'Inhale 2 puffs by mouth every 4 to 6 hours as needed for wheezing.', asNeeded: true };
const ACETAMINOPHEN: MedicationDef = { code: '313782', display: 'acetaminophen 325 MG Oral Tablet', short: 'acetaminophen as needed', dosage: 'Take 2 tablets by mouth every 6 hours as needed for pain or fever.', asNeeded: true };
const PENICILLIN_V: MedicationDef = { code: '834102', display: 'penicillin V potassium 500 MG Oral Tablet', short: 'penicillin V 500 mg twice daily for 10 days', dosage: 'Take 1 tablet by mouth twice daily for 10 days.', asNeeded: false };
const IBUPROFEN: MedicationDef = { code: '310965', display: 'ibuprofen 200 MG Oral Tablet', short: 'ibuprofen as needed', dosage: 'Take 2 tablets by mouth every 8 hours as needed for pain.', asNeeded: true };

type ChronicKey = 'hypertension' | 'hyperlipidemia' | 'diabetes' | 'prediabetes' | 'asthma' | 'sinusitis';

interface ChronicDef extends Code {
  key: ChronicKey;
  text: string;
  medication?: MedicationDef;
}

const CHRONIC: Record<ChronicKey, ChronicDef> = {
  hypertension: { key: 'hypertension', code: '38341003', display: 'Hypertensive disorder, systemic arterial (disorder)', text: 'Hypertension', medication: LISINOPRIL },
  hyperlipidemia: { key: 'hyperlipidemia', code: '55822004', display: 'Hyperlipidemia (disorder)', text: 'Hyperlipidemia', medication: ATORVASTATIN },
  diabetes: { key: 'diabetes', code: '44054006', display: 'Diabetes mellitus type 2 (disorder)', text: 'Type 2 diabetes mellitus', medication: METFORMIN },
  prediabetes: { key: 'prediabetes', code: '714628002', display: 'Prediabetes (finding)', text: 'Prediabetes' },
  asthma: { key: 'asthma', code: '195967001', display: 'Asthma (disorder)', text: 'Asthma', medication: ALBUTEROL },
  sinusitis: { key: 'sinusitis', code: '40055000', display: 'Chronic sinusitis (disorder)', text: 'Chronic sinusitis' },
};

type Setting = 'acute' | 'emergency' | 'inpatient';

interface AcuteDef extends Code {
  text: string;
  setting: Setting;
  days: number;
  fever: boolean;
  medication?: MedicationDef;
  procedure?: Code;
}

const THROAT_CULTURE: Code = { code: '117015009', display: 'Throat culture (procedure)' };

const ACUTE: readonly AcuteDef[] = [
  { code: '444814009', display: 'Viral sinusitis (disorder)', text: 'Viral sinusitis', setting: 'acute', days: 14, fever: false },
  { code: '195662009', display: 'Acute viral pharyngitis (disorder)', text: 'Acute viral pharyngitis', setting: 'acute', days: 7, fever: true, medication: ACETAMINOPHEN },
  { code: '43878008', display: 'Streptococcal sore throat (disorder)', text: 'Strep throat', setting: 'acute', days: 10, fever: true, medication: PENICILLIN_V, procedure: THROAT_CULTURE },
  { code: '10509002', display: 'Acute bronchitis (disorder)', text: 'Acute bronchitis', setting: 'acute', days: 21, fever: true, medication: ACETAMINOPHEN },
  { code: '10509002', display: 'Acute bronchitis (disorder)', text: 'Acute bronchitis', setting: 'emergency', days: 21, fever: true, medication: ACETAMINOPHEN },
  { code: '44465007', display: 'Sprain of ankle (disorder)', text: 'Ankle sprain', setting: 'emergency', days: 28, fever: false, medication: IBUPROFEN },
  { code: '233604007', display: 'Pneumonia (disorder)', text: 'Pneumonia', setting: 'inpatient', days: 30, fever: true },
];

const acuteIn = (setting: Setting): AcuteDef[] => ACUTE.filter((a) => a.setting === setting);

interface AllergyDef extends Code {
  category: 'medication' | 'food' | 'environment';
  criticality: 'low' | 'high';
  reaction: Code;
}

const PENICILLIN_ALLERGY: AllergyDef = { code: '91936005', display: 'Allergy to penicillin (finding)', category: 'medication', criticality: 'high', reaction: { code: '271807003', display: 'Eruption of skin (disorder)' } };
const ALLERGIES: readonly AllergyDef[] = [
  PENICILLIN_ALLERGY,
  { code: '91935009', display: 'Allergy to peanut (finding)', category: 'food', criticality: 'high', reaction: { code: '39579001', display: 'Anaphylaxis (disorder)' } },
  { code: '300916003', display: 'Latex allergy (finding)', category: 'environment', criticality: 'low', reaction: { code: '247472004', display: 'Wheal (finding)' } },
  { code: '419263009', display: 'Allergy to tree pollen (finding)', category: 'environment', criticality: 'low', reaction: { code: '267101005', display: 'Nasal congestion (finding)' } },
];

const VACCINES = {
  influenza: { code: '140', display: 'Influenza, seasonal, injectable, preservative free' },
  covid: { code: '208', display: 'SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose' },
  tdap: { code: '115', display: 'Tdap' },
  pneumococcal: { code: '133', display: 'Pneumococcal conjugate PCV 13' },
} satisfies Record<string, Code>;

const PROCEDURES = {
  assessment: { code: '710824005', display: 'Assessment of health and social care needs (procedure)' },
  depressionScreening: { code: '171207006', display: 'Depression screening (procedure)' },
  reconciliation: { code: '430193006', display: 'Medication reconciliation (procedure)' },
  colonoscopy: { code: '73761001', display: 'Colonoscopy (procedure)' },
} satisfies Record<string, Code>;

type VisitKind = 'checkup' | 'followup' | Setting | 'colonoscopy';

const ENCOUNTER_TYPES: Record<VisitKind, Code> = {
  checkup: { code: '185349003', display: 'Encounter for check up (procedure)' },
  followup: { code: '185347001', display: 'Encounter for problem (procedure)' },
  acute: { code: '185345009', display: 'Encounter for symptom (procedure)' },
  emergency: { code: '50849002', display: 'Emergency room admission (procedure)' },
  inpatient: { code: '32485007', display: 'Hospital admission (procedure)' },
  colonoscopy: { code: '371883000', display: 'Outpatient procedure (procedure)' },
};

const ENCOUNTER_CLASSES: Record<VisitKind, Code> = {
  checkup: { code: 'AMB', display: 'ambulatory' },
  followup: { code: 'AMB', display: 'ambulatory' },
  acute: { code: 'AMB', display: 'ambulatory' },
  colonoscopy: { code: 'AMB', display: 'ambulatory' },
  emergency: { code: 'EMER', display: 'emergency' },
  inpatient: { code: 'IMP', display: 'inpatient encounter' },
};

const NOTE_TYPES = {
  progress: { code: '11506-3', display: 'Progress note' },
  historyAndPhysical: { code: '34117-2', display: 'History and physical note' },
} satisfies Record<string, Code>;

// ---------------------------------------------------------------------------------------------
// Laboratory

interface LabDef extends Code {
  unit: string;
  decimals: number;
  /** [low, high] of the reference range, for women where it differs; either end may be absent. */
  range: readonly [number | undefined, number | undefined];
  rangeFemale?: readonly [number | undefined, number | undefined];
}

const LAB = {
  glucose: { code: '2339-0', display: 'Glucose [Mass/volume] in Blood', unit: 'mg/dL', decimals: 0, range: [70, 99] },
  creatinine: { code: '2160-0', display: 'Creatinine [Mass/volume] in Serum or Plasma', unit: 'mg/dL', decimals: 2, range: [0.7, 1.3], rangeFemale: [0.6, 1.1] },
  sodium: { code: '2951-2', display: 'Sodium [Moles/volume] in Serum or Plasma', unit: 'mmol/L', decimals: 0, range: [136, 145] },
  potassium: { code: '2823-3', display: 'Potassium [Moles/volume] in Serum or Plasma', unit: 'mmol/L', decimals: 1, range: [3.5, 5.1] },
  cholesterol: { code: '2093-3', display: 'Cholesterol [Mass/volume] in Serum or Plasma', unit: 'mg/dL', decimals: 0, range: [undefined, 199] },
  triglycerides: { code: '2571-8', display: 'Triglyceride [Mass/volume] in Serum or Plasma', unit: 'mg/dL', decimals: 0, range: [undefined, 149] },
  ldl: { code: '18262-6', display: 'Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay', unit: 'mg/dL', decimals: 0, range: [undefined, 99] },
  hdl: { code: '2085-9', display: 'Cholesterol in HDL [Mass/volume] in Serum or Plasma', unit: 'mg/dL', decimals: 0, range: [40, undefined] },
  hemoglobin: { code: '718-7', display: 'Hemoglobin [Mass/volume] in Blood', unit: 'g/dL', decimals: 1, range: [13.5, 17.5], rangeFemale: [12.0, 15.5] },
  hematocrit: { code: '4544-3', display: 'Hematocrit [Volume Fraction] of Blood by Automated count', unit: '%', decimals: 1, range: [41, 50], rangeFemale: [36, 44] },
  wbc: { code: '6690-2', display: 'Leukocytes [#/volume] in Blood by Automated count', unit: '10*3/uL', decimals: 1, range: [4.5, 11.0] },
  platelets: { code: '777-3', display: 'Platelets [#/volume] in Blood by Automated count', unit: '10*3/uL', decimals: 0, range: [150, 400] },
  hba1c: { code: '4548-4', display: 'Hemoglobin A1c/Hemoglobin.total in Blood', unit: '%', decimals: 1, range: [4.0, 5.6] },
} satisfies Record<string, LabDef>;

type LabKey = keyof typeof LAB;
type PanelKey = 'lipid' | 'cbc' | 'bmp';

const PANELS: Record<PanelKey, Code & { labs: readonly LabKey[]; name: string }> = {
  lipid: { code: '57698-3', display: 'Lipid panel with direct LDL - Serum or Plasma', name: 'lipid panel', labs: ['cholesterol', 'triglycerides', 'ldl', 'hdl'] },
  cbc: { code: '58410-2', display: 'CBC panel - Blood by Automated count', name: 'CBC', labs: ['hemoglobin', 'hematocrit', 'wbc', 'platelets'] },
  bmp: { code: '51990-0', display: 'Basic metabolic panel - Blood', name: 'basic metabolic panel', labs: ['glucose', 'creatinine', 'sodium', 'potassium'] },
};

const INTERPRETATIONS = { H: { code: 'H', display: 'High' }, L: { code: 'L', display: 'Low' } } satisfies Record<string, Code>;

// ---------------------------------------------------------------------------------------------
// People

interface Person {
  given: string[];
  family: string;
  gender: 'male' | 'female';
  birth: number;
  heritage: Heritage;
  address: Address;
  phone: string;
}

function pickHeritage(rng: Rng): Heritage {
  let roll = rng.real(0, HERITAGES.reduce((sum, h) => sum + h.weight, 0));
  for (const heritage of HERITAGES) {
    roll -= heritage.weight;
    if (roll < 0) return heritage;
  }
  return HERITAGES[0];
}

/** 555-01xx numbers are reserved for fiction. */
const phoneNumber = (rng: Rng, city: City): string => `(${city.areaCode}) 555-01${String(rng.int(0, 99)).padStart(2, '0')}`;

function createAddress(rng: Rng, city: City): Address {
  return {
    use: 'home',
    line: [`${rng.int(100, 9899)} ${rng.pick(STREETS)}`],
    city: city.city,
    state: city.state,
    postalCode: rng.pick(city.zips),
    country: 'US',
  };
}

function createPerson(rng: Rng, city: City, minAge: number, maxAge: number): Person {
  const heritage = pickHeritage(rng);
  const gender = rng.chance(0.5) ? 'female' : 'male';
  const names = gender === 'female' ? heritage.female : heritage.male;
  const first = rng.pick(names);
  const middle = rng.pick(names);
  const given = rng.chance(0.5) && middle !== first ? [first, middle] : [first];
  const age = rng.int(minAge, maxAge);
  const birth = Date.UTC(ANCHOR_YEAR - age - 1, 0, 1) + rng.int(0, 364) * DAY;
  return { given, family: rng.pick(heritage.family), gender, birth, heritage, address: createAddress(rng, city), phone: phoneNumber(rng, city) };
}

/** Like Epic's test logins ('fhirjason'): letters only. */
const baseUsername = (person: Person): string => `${person.given[0]}${person.family}`.toLowerCase().replace(/[^a-z]/g, '');

/** a, b, …, z, aa, ab, …: a suffix that keeps usernames letters only. */
function letters(n: number): string {
  let out = '';
  for (let k = n + 1; k > 0; k = Math.floor((k - 1) / 26)) out = String.fromCharCode(97 + ((k - 1) % 26)) + out;
  return out;
}

function uniqueUsername(person: Person, taken: Set<string>): string {
  const base = baseUsername(person);
  let name = base;
  for (let n = 0; taken.has(name); n++) name = base + letters(n);
  taken.add(name);
  return name;
}

/** A 10-digit NPI whose last digit is the Luhn check digit over the prefix 80840, as real NPIs have. */
function npi(rng: Rng): string {
  const body = `1${Array.from({ length: 8 }, () => rng.int(0, 9)).join('')}`;
  const digits = `80840${body}`;
  let sum = 0;
  for (let i = digits.length - 1, double = true; i >= 0; i--, double = !double) {
    const d = Number(digits[i]) * (double ? 2 : 1);
    sum += d > 9 ? d - 9 : d;
  }
  return body + String((10 - (sum % 10)) % 10);
}

function raceExtension(heritage: Heritage): Extension {
  return {
    url: `${US_CORE}/us-core-race`,
    extension: [
      { url: 'ombCategory', valueCoding: { system: OMB, ...heritage.race } },
      { url: 'text', valueString: heritage.race.display },
    ],
  };
}

function ethnicityExtension(heritage: Heritage): Extension {
  const ethnicity = heritage.hispanic ? HISPANIC : NOT_HISPANIC;
  return {
    url: `${US_CORE}/us-core-ethnicity`,
    extension: [
      { url: 'ombCategory', valueCoding: { system: OMB, ...ethnicity } },
      { url: 'text', valueString: ethnicity.display },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// The system: Organization, Practitioners, Locations

interface SystemContext {
  seed: string;
  vendor?: VendorVariations;
  idPrefix: string;
  systemName: string;
  years: number;
  city: City;
  organization: Organization;
  clinic: Location;
  hospital: Location;
  primaryCare: Practitioner[];
  emergency: Practitioner;
  hospitalist: Practitioner;
  gastroenterologist: Practitioner;
  mrnSystem: string;
  mrnBase: number;
}

const slug = (name: string): string => name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'system';

function createOrganization(rng: Rng, id: string, name: string, city: City): Organization {
  const domain = `${slug(name)}.example.org`;
  return {
    resourceType: 'Organization',
    id,
    identifier: [{ system: NPI, value: npi(rng) }],
    active: true,
    type: [concept(`${TERMINOLOGY}/organization-type`, { code: 'prov', display: 'Healthcare Provider' })],
    name,
    telecom: [
      { system: 'phone', value: phoneNumber(rng, city), use: 'work' },
      { system: 'url', value: `https://${domain}`, use: 'work' },
    ],
    address: [{ ...createAddress(rng, city), use: 'work' }],
  };
}

function createPractitioner(rng: Rng, id: string, city: City): Practitioner {
  const person = createPerson(rng, city, 30, 65);
  return {
    resourceType: 'Practitioner',
    id,
    identifier: [{ system: NPI, value: npi(rng) }],
    active: true,
    name: [{ use: 'official', family: person.family, given: [person.given[0]], prefix: ['Dr.'], suffix: ['MD'] }],
    gender: person.gender,
    telecom: [{ system: 'phone', value: phoneNumber(rng, city), use: 'work' }],
  };
}

function createLocation(id: string, name: string, type: Code, organization: Organization): Location {
  return {
    resourceType: 'Location',
    id,
    status: 'active',
    name,
    mode: 'instance',
    type: [concept(`${TERMINOLOGY}/v3-RoleCode`, type)],
    telecom: organization.telecom?.slice(0, 1),
    address: organization.address?.[0],
    managingOrganization: ref(organization),
  };
}

function createSystem(opts: GenerateOptions, years: number): SystemContext {
  const rng = createRng(`${opts.seed}:system`);
  const { idPrefix, systemName } = opts;
  const city = rng.pick(CITIES);
  const organization = createOrganization(rng, `${idPrefix}-org`, systemName, city);
  const practitioners = Array.from({ length: 6 }, (_, i) => createPractitioner(rng, `${idPrefix}-prac-${i + 1}`, city));
  return {
    seed: opts.seed,
    vendor: opts.vendor,
    idPrefix,
    systemName,
    years,
    city,
    organization,
    clinic: createLocation(`${idPrefix}-loc-1`, `${systemName} Primary Care Clinic`, { code: 'OF', display: 'Outpatient facility' }, organization),
    hospital: createLocation(`${idPrefix}-loc-2`, `${systemName} Hospital`, { code: 'HOSP', display: 'Hospital' }, organization),
    primaryCare: practitioners.slice(0, 3),
    emergency: practitioners[3],
    hospitalist: practitioners[4],
    gastroenterologist: practitioners[5],
    mrnSystem: `urn:tributary:sandbox:${idPrefix}:mrn`,
    mrnBase: rng.int(10_000_000, 80_000_000),
  };
}

const sharedResources = (sys: SystemContext): Resource[] => [
  sys.organization,
  ...sys.primaryCare,
  sys.emergency,
  sys.hospitalist,
  sys.gastroenterologist,
  sys.clinic,
  sys.hospital,
];

const practitionerName = (p: Practitioner): string => `Dr. ${p.name?.[0].given?.[0]} ${p.name?.[0].family}, MD`;

// ---------------------------------------------------------------------------------------------
// A patient's chart

interface Chronic {
  def: ChronicDef;
  onset: number;
  condition?: Condition;
  /** The latest order of its medication; the ones before it are completed. */
  order?: MedicationRequest;
}

interface Visit {
  kind: VisitKind;
  start: number;
  end: number;
  acute?: AcuteDef;
}

interface Body {
  height: number;
  weight: number;
  weightPerYear: number;
  systolic: number;
  diastolic: number;
  dailySteps: number;
}

interface Chart {
  sys: SystemContext;
  rng: Rng;
  index: number;
  person: Person;
  patient: Patient;
  pcp: Practitioner;
  historyStart: number;
  body: Body;
  chronic: Chronic[];
  allergies: AllergyDef[];
  counters: Map<string, number>;
  resources: Resource[];
}

/** Ids are `${idPrefix}-${kind}-${patient}-${n}`, numbered in the order the resources are made. */
function nextId(chart: Chart, kind: string): string {
  const n = (chart.counters.get(kind) ?? 0) + 1;
  chart.counters.set(kind, n);
  return `${chart.sys.idPrefix}-${kind}-${chart.index}-${n}`;
}

function add<T extends Resource>(chart: Chart, resource: T): T {
  chart.resources.push(resource);
  return resource;
}

const has = (chart: Chart, key: ChronicKey, at: number): boolean => chart.chronic.some((c) => c.def.key === key && c.onset <= at);
const treated = (chart: Chart, key: ChronicKey, at: number): boolean =>
  chart.chronic.some((c) => c.def.key === key && c.order?.authoredOn !== undefined && c.order.authoredOn <= isoDateTime(at));
const ageAt = (chart: Chart, at: number): number => Math.floor(yearsBetween(chart.person.birth, at));
const female = (chart: Chart): boolean => chart.person.gender === 'female';

function createPatientResource(sys: SystemContext, index: number, person: Person, mrn: string, email: string, pcp: Practitioner): Patient {
  return {
    resourceType: 'Patient',
    id: `${sys.idPrefix}-pat-${index}`,
    meta: { profile: [`${US_CORE}/us-core-patient`] },
    extension: [
      raceExtension(person.heritage),
      ethnicityExtension(person.heritage),
      { url: `${US_CORE}/us-core-birthsex`, valueCode: person.gender === 'female' ? 'F' : 'M' },
    ],
    identifier: [
      {
        use: 'usual',
        type: { coding: [{ system: `${TERMINOLOGY}/v2-0203`, code: 'MR', display: 'Medical Record Number' }], text: 'Medical Record Number' },
        system: sys.mrnSystem,
        value: mrn,
      },
    ],
    active: true,
    name: [{ use: 'official', family: person.family, given: person.given }],
    telecom: [
      { system: 'phone', value: person.phone, use: 'mobile' },
      { system: 'email', value: email, use: 'home' },
    ],
    gender: person.gender,
    birthDate: isoDate(person.birth),
    address: [person.address],
    generalPractitioner: [ref(pcp)],
    managingOrganization: ref(sys.organization),
  };
}

function createBody(rng: Rng, person: Person, chronic: ChronicKey[]): Body {
  const isFemale = person.gender === 'female';
  const height = round(isFemale ? rng.real(152, 175) : rng.real(164, 192), 1);
  const bmi = chronic.includes('diabetes') || chronic.includes('prediabetes') ? rng.real(27, 36) : rng.real(20, 31);
  const hypertensive = chronic.includes('hypertension');
  return {
    height,
    weight: bmi * (height / 100) ** 2,
    weightPerYear: rng.real(-0.8, 1.2),
    systolic: hypertensive ? rng.real(140, 156) : rng.real(106, 126),
    diastolic: hypertensive ? rng.real(88, 96) : rng.real(66, 80),
    dailySteps: rng.real(3000, 11000) * clamp(1.3 - yearsBetween(person.birth, ANCHOR) / 100, 0.6, 1.1),
  };
}

/** Which chronic problems a patient has: more of them with age, diabetes and prediabetes exclusive. */
function drawChronic(rng: Rng, age: number): ChronicKey[] {
  const older = age >= 45 ? 1.4 : 0.6;
  const keys: ChronicKey[] = [];
  if (rng.chance(0.3 * older)) keys.push('hypertension');
  if (rng.chance(0.25 * older)) keys.push('hyperlipidemia');
  const glucose = rng.next();
  if (glucose < 0.1 * older) keys.push('diabetes');
  else if (glucose < 0.28 * older) keys.push('prediabetes');
  if (rng.chance(0.09)) keys.push('asthma');
  if (rng.chance(0.07)) keys.push('sinusitis');
  return keys;
}

function drawOnset(rng: Rng, person: Person, historyStart: number): number {
  const earliest = Math.max(person.birth + 18 * YEAR, historyStart - 8 * YEAR);
  const latest = ANCHOR - 90 * DAY;
  return earliest >= latest ? latest : Math.floor(rng.real(earliest, latest) / DAY) * DAY;
}

function drawAllergies(rng: Rng): AllergyDef[] {
  return ALLERGIES.filter(() => rng.chance(0.12));
}

// ---------------------------------------------------------------------------------------------
// Planning visits

/** A visit on a day in [from, to), in clinic hours (as UTC, which the sandbox does not care about). */
function visitAt(rng: Rng, kind: VisitKind, from: number, to: number, acute?: AcuteDef): Visit {
  const days = Math.max(1, Math.floor((to - from) / DAY));
  let day = from + rng.int(0, days - 1) * DAY;
  if (kind !== 'emergency' && kind !== 'inpatient') day = Math.max(from, weekday(day));
  const start = day + rng.int(8 * 4, 16 * 4) * 15 * MINUTE;
  return { kind, start, end: start + durationMinutes(rng, kind) * MINUTE, acute };
}

function durationMinutes(rng: Rng, kind: VisitKind): number {
  switch (kind) {
    case 'checkup':
      return 40;
    case 'followup':
      return 25;
    case 'acute':
      return 20;
    case 'colonoscopy':
      return 60;
    case 'emergency':
      return rng.int(2, 6) * 60;
    case 'inpatient':
      return rng.int(2, 5) * 24 * 60;
  }
}

function planYear(chart: Chart, from: number, to: number, lastColonoscopy: { at: number }): Visit[] {
  const { rng } = chart;
  // A partial first year gets its share of visits.
  const keep = (): boolean => rng.chance((to - from) / YEAR);
  const visits: Visit[] = [];
  if (rng.chance(0.9) && keep()) visits.push(visitAt(rng, 'checkup', from, to));
  // Follow-ups start once there is a problem to follow.
  const firstOnset = Math.min(...chart.chronic.map((c) => c.onset));
  if (firstOnset < to - DAY) {
    for (let n = rng.int(1, 2); n > 0; n--) if (keep()) visits.push(visitAt(rng, 'followup', Math.max(from, firstOnset + DAY), to));
  }
  for (let n = rng.int(0, 2); n > 0; n--) {
    const acute = rng.pick(acuteIn('acute'));
    if (keep()) visits.push(visitAt(rng, 'acute', from, to, acute));
  }
  if (rng.chance(0.12) && keep()) visits.push(visitAt(rng, 'emergency', from, to, rng.pick(acuteIn('emergency'))));
  if (rng.chance(0.03) && keep()) visits.push(visitAt(rng, 'inpatient', from, to, rng.pick(acuteIn('inpatient'))));
  const dueColonoscopy = ageAt(chart, from) >= 45 && from - lastColonoscopy.at > 10 * YEAR;
  if (dueColonoscopy && rng.chance(0.3) && keep()) {
    const visit = visitAt(rng, 'colonoscopy', from, to);
    lastColonoscopy.at = visit.start;
    visits.push(visit);
  }
  return visits;
}

/** Years end at the anchor (a partial one comes first) and are planned oldest first, so that screening intervals count forward. */
function planVisits(chart: Chart): Visit[] {
  const years: [number, number][] = [];
  for (let to = ANCHOR; to > chart.historyStart; to -= YEAR) years.unshift([Math.max(chart.historyStart, to - YEAR), to]);
  const visits: Visit[] = [];
  const lastColonoscopy = { at: Number.NEGATIVE_INFINITY };
  for (const [from, to] of years) visits.push(...planYear(chart, from, to, lastColonoscopy));
  // Inpatient stays end before the anchor, so that every period is in the past.
  return visits.filter((v) => v.end < ANCHOR).sort((a, b) => a.start - b.start);
}

// ---------------------------------------------------------------------------------------------
// Resources of a visit

function createEncounter(chart: Chart, visit: Visit, practitioner: Practitioner, reasons: Condition[]): Encounter {
  const period = { start: isoDateTime(visit.start), end: isoDateTime(visit.end) };
  const location = visit.kind === 'emergency' || visit.kind === 'inpatient' ? chart.sys.hospital : chart.sys.clinic;
  return add(chart, {
    resourceType: 'Encounter',
    id: nextId(chart, 'enc'),
    status: 'finished',
    class: { system: `${TERMINOLOGY}/v3-ActCode`, ...ENCOUNTER_CLASSES[visit.kind] },
    type: [concept(SNOMED, ENCOUNTER_TYPES[visit.kind])],
    subject: ref(chart.patient),
    participant: [
      {
        type: [concept(`${TERMINOLOGY}/v3-ParticipationType`, { code: 'PPRF', display: 'primary performer' })],
        period,
        individual: ref(practitioner),
      },
    ],
    period,
    ...(reasons.length ? { reasonReference: reasons.map(ref) } : {}),
    location: [{ location: ref(location), period }],
    serviceProvider: ref(chart.sys.organization),
  });
}

const CATEGORY = {
  vitals: concept(`${TERMINOLOGY}/observation-category`, { code: 'vital-signs', display: 'Vital Signs' }),
  laboratory: concept(`${TERMINOLOGY}/observation-category`, { code: 'laboratory', display: 'Laboratory' }),
  activity: concept(`${TERMINOLOGY}/observation-category`, { code: 'activity', display: 'Activity' }),
};

function observation(chart: Chart, encounter: Encounter, category: CodeableConcept, code: CodeableConcept, at: number): Observation {
  return {
    resourceType: 'Observation',
    id: nextId(chart, 'obs'),
    status: 'final',
    category: [category],
    code,
    subject: ref(chart.patient),
    encounter: ref(encounter),
    effectiveDateTime: isoDateTime(at),
  };
}

interface Vitals {
  systolic: number;
  diastolic: number;
  heartRate: number;
  respiratoryRate: number;
  temperature: number;
  height: number;
  weight: number;
  bmi: number;
  spo2: number;
}

function measureVitals(chart: Chart, visit: Visit): Vitals {
  const { rng, body } = chart;
  const ill = visit.acute?.fever ?? false;
  const bpDrop = treated(chart, 'hypertension', visit.start) ? 12 : 0;
  const weight = round(body.weight + body.weightPerYear * yearsBetween(chart.historyStart, visit.start) + rng.real(-0.8, 0.8), 1);
  const breathing = ill || has(chart, 'asthma', visit.start);
  return {
    systolic: Math.round(body.systolic - bpDrop + rng.real(-6, 6)),
    diastolic: Math.round(body.diastolic - bpDrop * 0.6 + rng.real(-4, 4)),
    heartRate: Math.round(rng.real(60, 86) + (ill ? 12 : 0)),
    respiratoryRate: rng.int(12, 17) + (ill ? 3 : 0),
    temperature: round(ill ? rng.real(37.6, 38.7) : rng.real(36.4, 37.1), 1),
    height: body.height,
    weight,
    bmi: round(weight / (body.height / 100) ** 2, 1),
    spo2: breathing ? rng.int(93, 97) : rng.int(96, 99),
  };
}

function vitalSign(chart: Chart, encounter: Encounter, at: number, code: Code, value: Quantity): Observation {
  return add(chart, { ...observation(chart, encounter, CATEGORY.vitals, concept(LOINC, code), at), valueQuantity: value });
}

function recordVitals(chart: Chart, encounter: Encounter, at: number, v: Vitals): void {
  const bp = concept(LOINC, { code: '85354-9', display: 'Blood pressure panel with all children optional' }, 'Blood pressure');
  add(chart, {
    ...observation(chart, encounter, CATEGORY.vitals, bp, at),
    meta: { profile: [`${US_CORE}/us-core-blood-pressure`] },
    component: [
      { code: concept(LOINC, { code: '8480-6', display: 'Systolic blood pressure' }), valueQuantity: quantity(v.systolic, 'mm[Hg]') },
      { code: concept(LOINC, { code: '8462-4', display: 'Diastolic blood pressure' }), valueQuantity: quantity(v.diastolic, 'mm[Hg]') },
    ],
  });
  vitalSign(chart, encounter, at, { code: '8867-4', display: 'Heart rate' }, quantity(v.heartRate, 'beats/minute', '/min'));
  vitalSign(chart, encounter, at, { code: '9279-1', display: 'Respiratory rate' }, quantity(v.respiratoryRate, 'breaths/minute', '/min'));
  vitalSign(chart, encounter, at, { code: '8310-5', display: 'Body temperature' }, quantity(v.temperature, 'Cel'));
  vitalSign(chart, encounter, at, { code: '8302-2', display: 'Body height' }, quantity(v.height, 'cm'));
  vitalSign(chart, encounter, at, { code: '29463-7', display: 'Body weight' }, quantity(v.weight, 'kg'));
  vitalSign(chart, encounter, at, { code: '39156-5', display: 'Body mass index (BMI) [Ratio]' }, quantity(v.bmi, 'kg/m2'));
  const spo2: CodeableConcept = {
    coding: [
      { system: LOINC, code: '59408-5', display: 'Oxygen saturation in Arterial blood by Pulse oximetry' },
      { system: LOINC, code: '2708-6', display: 'Oxygen saturation in Arterial blood' },
    ],
    text: 'Oxygen saturation',
  };
  add(chart, { ...observation(chart, encounter, CATEGORY.vitals, spo2, at), valueQuantity: quantity(v.spo2, '%') });
}

/** Values of one draw of a panel, consistent with the patient's problems at that time. */
function labValues(chart: Chart, panel: PanelKey | 'hba1c', at: number, infection: boolean): Partial<Record<LabKey, number>> {
  const { rng } = chart;
  const isFemale = female(chart);
  const diabetic = has(chart, 'diabetes', at);
  const prediabetic = has(chart, 'prediabetes', at);
  switch (panel) {
    case 'lipid': {
      const lipids = has(chart, 'hyperlipidemia', at);
      const ldl = lipids ? (treated(chart, 'hyperlipidemia', at) ? rng.real(80, 125) : rng.real(160, 205)) : rng.real(70, 128);
      const hdl = isFemale ? rng.real(44, 76) : rng.real(36, 60);
      const triglycerides = (lipids ? rng.real(140, 260) : rng.real(60, 170)) + (diabetic ? 30 : 0);
      return { ldl, hdl, triglycerides, cholesterol: ldl + hdl + triglycerides / 5 };
    }
    case 'cbc': {
      const hemoglobin = (isFemale ? rng.real(12.0, 14.8) : rng.real(13.6, 16.6)) - (rng.chance(0.05) ? 1.8 : 0);
      return { hemoglobin, hematocrit: hemoglobin * 3 + rng.real(-1, 1), wbc: rng.real(4.6, 10.2) + (infection ? 4 : 0), platelets: rng.real(165, 380) };
    }
    case 'bmp':
      return {
        glucose: diabetic ? rng.real(125, 190) : prediabetic ? rng.real(100, 124) : rng.real(72, 98),
        creatinine: isFemale ? rng.real(0.6, 1.0) : rng.real(0.75, 1.25),
        sodium: rng.real(137, 144),
        potassium: rng.real(3.7, 4.9),
      };
    case 'hba1c':
      if (diabetic) return { hba1c: treated(chart, 'diabetes', at) ? rng.real(6.5, 7.8) : rng.real(7.6, 9.4) };
      return { hba1c: prediabetic ? rng.real(5.7, 6.4) : rng.real(4.8, 5.5) };
  }
}

function labObservation(chart: Chart, encounter: Encounter, key: LabKey, raw: number, at: number, issued: number): Observation {
  const def: LabDef = LAB[key];
  const value = round(raw, def.decimals);
  const [low, high] = female(chart) && def.rangeFemale ? def.rangeFemale : def.range;
  const range: ObservationReferenceRange = {
    ...(low !== undefined ? { low: quantity(low, def.unit) } : {}),
    ...(high !== undefined ? { high: quantity(high, def.unit) } : {}),
  };
  const flag = high !== undefined && value > high ? INTERPRETATIONS.H : low !== undefined && value < low ? INTERPRETATIONS.L : undefined;
  return add(chart, {
    ...observation(chart, encounter, CATEGORY.laboratory, concept(LOINC, def), at),
    issued: isoDateTime(issued),
    valueQuantity: quantity(value, def.unit),
    referenceRange: [range],
    ...(flag ? { interpretation: [concept(`${TERMINOLOGY}/v3-ObservationInterpretation`, flag)] } : {}),
  });
}

function labPanel(chart: Chart, encounter: Encounter, visit: Visit, panel: PanelKey): DiagnosticReport {
  const def = PANELS[panel];
  const issued = visit.start + 6 * 60 * MINUTE;
  const values = labValues(chart, panel, visit.start, visit.acute?.fever ?? false);
  const results = def.labs.map((key) => labObservation(chart, encounter, key, values[key] ?? 0, visit.start, issued));
  return add(chart, {
    resourceType: 'DiagnosticReport',
    id: nextId(chart, 'dr'),
    status: 'final',
    category: [concept(`${TERMINOLOGY}/v2-0074`, { code: 'LAB', display: 'Laboratory' })],
    code: concept(LOINC, def),
    subject: ref(chart.patient),
    encounter: ref(encounter),
    effectiveDateTime: isoDateTime(visit.start),
    issued: isoDateTime(issued),
    performer: [ref(chart.sys.organization)],
    result: results.map(ref),
  });
}

function hba1c(chart: Chart, encounter: Encounter, visit: Visit): void {
  const values = labValues(chart, 'hba1c', visit.start, false);
  labObservation(chart, encounter, 'hba1c', values.hba1c ?? 0, visit.start, visit.start + 6 * 60 * MINUTE);
}

function procedure(chart: Chart, encounter: Encounter, code: Code, practitioner: Practitioner, start: number, end?: number): Procedure {
  return add(chart, {
    resourceType: 'Procedure',
    id: nextId(chart, 'proc'),
    status: 'completed',
    code: concept(SNOMED, code),
    subject: ref(chart.patient),
    encounter: ref(encounter),
    ...(end ? { performedPeriod: { start: isoDateTime(start), end: isoDateTime(end) } } : { performedDateTime: isoDateTime(start) }),
    performer: [{ actor: ref(practitioner) }],
    location: encounter.location?.[0].location,
  });
}

function medicationRequest(chart: Chart, encounter: Encounter, med: MedicationDef, at: number, practitioner: Practitioner, reason: Condition, status: 'active' | 'completed'): MedicationRequest {
  return add(chart, {
    resourceType: 'MedicationRequest',
    id: nextId(chart, 'med'),
    meta: { profile: [`${US_CORE}/us-core-medicationrequest`] },
    status,
    intent: 'order',
    category: [concept(`${TERMINOLOGY}/medicationrequest-category`, { code: 'community', display: 'Community' })],
    medicationCodeableConcept: concept(RXNORM, med, med.display),
    subject: ref(chart.patient),
    encounter: ref(encounter),
    authoredOn: isoDateTime(at),
    requester: ref(practitioner),
    reasonReference: [ref(reason)],
    dosageInstruction: [
      {
        text: med.dosage,
        asNeededBoolean: med.asNeeded,
      },
    ],
  });
}

/**
 * Orders the medication of each known chronic problem: at a check-up all of them anew (`renew`; the
 * order replaced is completed), at a follow-up only those not ordered yet.
 */
function orderMedications(chart: Chart, encounter: Encounter, visit: Visit, renew: boolean): void {
  for (const chronic of chart.chronic) {
    const med = chronic.def.medication;
    const known = chronic.condition?.recordedDate !== undefined && chronic.condition.recordedDate <= isoDateTime(visit.start);
    if (!med || !chronic.condition || !known || (chronic.order && !renew)) continue;
    if (chronic.order) chronic.order.status = 'completed';
    chronic.order = medicationRequest(chart, encounter, med, visit.end, chart.pcp, chronic.condition, 'active');
  }
}

const COND_CATEGORY = `${TERMINOLOGY}/condition-category`;

function conditionResource(chart: Chart, code: Code, text: string, category: Code, onset: number, recorded: number, encounter?: Encounter, abated?: number): Condition {
  return {
    resourceType: 'Condition',
    id: nextId(chart, 'cond'),
    clinicalStatus: concept(`${TERMINOLOGY}/condition-clinical`, abated ? { code: 'resolved', display: 'Resolved' } : { code: 'active', display: 'Active' }),
    verificationStatus: concept(`${TERMINOLOGY}/condition-ver-status`, { code: 'confirmed', display: 'Confirmed' }),
    category: [concept(COND_CATEGORY, category)],
    code: concept(SNOMED, code, text),
    subject: ref(chart.patient),
    ...(encounter ? { encounter: ref(encounter) } : {}),
    onsetDateTime: isoDate(onset),
    ...(abated ? { abatementDateTime: isoDate(abated) } : {}),
    recordedDate: isoDateTime(recorded),
  };
}

function documentReference(chart: Chart, encounter: Encounter, visit: Visit, author: Practitioner, text: string): DocumentReference {
  const type = visit.kind === 'checkup' || visit.kind === 'inpatient' ? NOTE_TYPES.historyAndPhysical : NOTE_TYPES.progress;
  return add(chart, {
    resourceType: 'DocumentReference',
    id: nextId(chart, 'doc'),
    status: 'current',
    docStatus: 'final',
    type: concept(LOINC, type),
    category: [concept('http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category', { code: 'clinical-note', display: 'Clinical Note' })],
    subject: ref(chart.patient),
    date: isoDateTime(visit.end),
    author: [ref(author)],
    custodian: ref(chart.sys.organization),
    content: [
      {
        attachment: {
          contentType: 'text/plain',
          data: Buffer.from(text, 'utf8').toString('base64'),
          title: type.display,
          creation: isoDateTime(visit.end),
        },
      },
    ],
    context: { encounter: [ref(encounter)], period: encounter.period },
  });
}

interface NoteParts {
  reason: string;
  assessment: string;
  plan: string;
}

function noteText(chart: Chart, visit: Visit, author: Practitioner, title: string, v: Vitals, parts: NoteParts): string {
  const { person } = chart;
  return [
    title,
    chart.sys.systemName,
    `Date: ${isoDate(visit.start)}`,
    `Patient: ${person.given.join(' ')} ${person.family}, born ${isoDate(person.birth)}, MRN ${chart.patient.identifier?.[0].value}`,
    `Author: ${practitionerName(author)}`,
    '',
    `Reason for visit: ${parts.reason}`,
    `Vital signs: BP ${v.systolic}/${v.diastolic} mmHg, HR ${v.heartRate}/min, RR ${v.respiratoryRate}/min, temperature ${v.temperature} C, SpO2 ${v.spo2}%, weight ${v.weight} kg, BMI ${v.bmi}.`,
    `Assessment: ${parts.assessment}`,
    `Plan: ${parts.plan}`,
    '',
  ].join('\n');
}

const knownProblems = (chart: Chart, at: number): Chronic[] =>
  chart.chronic.filter((c) => c.condition?.recordedDate !== undefined && c.condition.recordedDate <= isoDateTime(at));

const medicationList = (chronic: Chronic[]): string[] => chronic.flatMap((c) => (c.def.medication ? [c.def.medication.short] : []));

function listOrNone(items: string[], none: string): string {
  return items.length ? items.join(', ') : none;
}

function checkup(chart: Chart, visit: Visit, encounter: Encounter, vitals: Vitals): NoteParts {
  const age = ageAt(chart, visit.start);
  const panels: PanelKey[] = ['lipid', 'cbc', 'bmp'];
  for (const panel of panels) labPanel(chart, encounter, visit, panel);
  const sugars = has(chart, 'diabetes', visit.start) || has(chart, 'prediabetes', visit.start) || vitals.bmi >= 30;
  if (sugars) hba1c(chart, encounter, visit);
  procedure(chart, encounter, PROCEDURES.assessment, chart.pcp, visit.start + 10 * MINUTE);
  if (age >= 18) procedure(chart, encounter, PROCEDURES.depressionScreening, chart.pcp, visit.start + 20 * MINUTE);
  orderMedications(chart, encounter, visit, true);
  const problems = knownProblems(chart, visit.start);
  return {
    reason: 'Annual check-up.',
    assessment: `Routine health maintenance, age ${age}. Active problems: ${listOrNone(problems.map((c) => c.def.text.toLowerCase()), 'none')}.`,
    plan: `Labs: ${panels.map((p) => PANELS[p].name).join(', ')}${sugars ? ', hemoglobin A1c' : ''}. Medications: ${listOrNone(medicationList(problems), 'none')}. Return in 12 months.`,
  };
}

function followup(chart: Chart, visit: Visit, encounter: Encounter): NoteParts {
  const problems = knownProblems(chart, visit.start);
  if (has(chart, 'diabetes', visit.start)) hba1c(chart, encounter, visit);
  const meds = medicationList(problems);
  if (meds.length) procedure(chart, encounter, PROCEDURES.reconciliation, chart.pcp, visit.start + 5 * MINUTE);
  orderMedications(chart, encounter, visit, false);
  const names = listOrNone(problems.map((c) => c.def.text.toLowerCase()), 'new concerns');
  return {
    reason: `Follow-up of ${names}.`,
    assessment: `${names[0].toUpperCase()}${names.slice(1)}: stable.`,
    plan: `${meds.length ? `Medications reconciled; continue ${meds.join(', ')}.` : 'Lifestyle counseling.'} Return in 6 months.`,
  };
}

function illness(chart: Chart, visit: Visit, encounter: Encounter, practitioner: Practitioner, diagnosis: Condition): NoteParts {
  const acute = visit.acute as AcuteDef;
  if (acute.procedure) procedure(chart, encounter, acute.procedure, practitioner, visit.start + 10 * MINUTE);
  if (visit.kind === 'inpatient') {
    labPanel(chart, encounter, visit, 'cbc');
    labPanel(chart, encounter, visit, 'bmp');
  }
  const allergic = acute.medication === PENICILLIN_V && chart.allergies.includes(PENICILLIN_ALLERGY);
  const med = allergic ? undefined : acute.medication;
  if (med) medicationRequest(chart, encounter, med, visit.end, practitioner, diagnosis, 'completed');
  return {
    reason: `${acute.text}.`,
    assessment: `${acute.text}.${allergic ? ' Penicillin allergy noted.' : ''}`,
    plan: med ? `Start ${med.short}. Return if not improving.` : 'Supportive care. Return if not improving.',
  };
}

function colonoscopy(chart: Chart, visit: Visit, encounter: Encounter): NoteParts {
  procedure(chart, encounter, PROCEDURES.colonoscopy, chart.sys.gastroenterologist, visit.start + 10 * MINUTE, visit.end - 10 * MINUTE);
  return { reason: 'Screening colonoscopy.', assessment: 'Colonoscopy to the cecum; no polyps seen.', plan: 'Repeat screening in 10 years.' };
}

function visitPractitioner(chart: Chart, visit: Visit): Practitioner {
  if (visit.kind === 'emergency') return chart.sys.emergency;
  if (visit.kind === 'inpatient') return chart.sys.hospitalist;
  if (visit.kind === 'colonoscopy') return chart.sys.gastroenterologist;
  return chart.pcp;
}

/** The chronic problems recorded at this visit (first seen at it) and those it follows up. */
function visitReasons(chart: Chart, visit: Visit): Condition[] {
  if (visit.kind !== 'followup') return chart.chronic.flatMap((c) => (c.condition?.recordedDate === isoDateTime(visit.start) ? [c.condition] : []));
  return knownProblems(chart, visit.start).flatMap((c) => (c.condition ? [c.condition] : []));
}

function recordVisit(chart: Chart, visit: Visit): void {
  const practitioner = visitPractitioner(chart, visit);
  const encounter = createEncounter(chart, visit, practitioner, visitReasons(chart, visit));
  for (const c of chart.chronic) {
    if (c.condition?.recordedDate === isoDateTime(visit.start)) c.condition.encounter = ref(encounter);
  }
  let diagnosis: Condition | undefined;
  if (visit.acute) {
    const abated = visit.start + visit.acute.days * DAY;
    const category = { code: 'encounter-diagnosis', display: 'Encounter Diagnosis' };
    diagnosis = add(chart, conditionResource(chart, visit.acute, visit.acute.text, category, visit.start - 2 * DAY, visit.start, encounter, abated < ANCHOR ? abated : undefined));
    encounter.reasonReference = [ref(diagnosis)];
  }
  const vitals = measureVitals(chart, visit);
  recordVitals(chart, encounter, visit.start + 5 * MINUTE, vitals);
  let parts: NoteParts;
  if (visit.kind === 'checkup') parts = checkup(chart, visit, encounter, vitals);
  else if (visit.kind === 'followup') parts = followup(chart, visit, encounter);
  else if (visit.kind === 'colonoscopy') parts = colonoscopy(chart, visit, encounter);
  else parts = illness(chart, visit, encounter, practitioner, diagnosis as Condition);
  const title = visit.kind === 'checkup' || visit.kind === 'inpatient' ? 'History and physical' : 'Progress note';
  documentReference(chart, encounter, visit, practitioner, noteText(chart, visit, practitioner, title, vitals, parts));
}

// ---------------------------------------------------------------------------------------------
// Resources outside visits

/**
 * The problem list. A problem is recorded at the first visit on or after its onset (the visit then
 * gets its encounter); one older than the history was recorded at its onset.
 */
function recordProblems(chart: Chart, visits: Visit[]): void {
  const category = { code: 'problem-list-item', display: 'Problem List Item' };
  for (const chronic of chart.chronic) {
    const visit = visits.find((v) => v.start >= chronic.onset && v.kind !== 'colonoscopy');
    const recorded = chronic.onset < chart.historyStart || !visit ? chronic.onset : visit.start;
    chronic.condition = add(chart, conditionResource(chart, chronic.def, chronic.def.text, category, chronic.onset, recorded));
  }
}

function recordAllergies(chart: Chart): void {
  for (const allergy of chart.allergies) {
    add(chart, {
      resourceType: 'AllergyIntolerance',
      id: nextId(chart, 'alg'),
      clinicalStatus: concept(`${TERMINOLOGY}/allergyintolerance-clinical`, { code: 'active', display: 'Active' }),
      verificationStatus: concept(`${TERMINOLOGY}/allergyintolerance-verification`, { code: 'confirmed', display: 'Confirmed' }),
      type: 'allergy',
      category: [allergy.category],
      criticality: allergy.criticality,
      code: concept(SNOMED, allergy),
      patient: ref(chart.patient),
      recordedDate: isoDateTime(chart.historyStart),
      recorder: ref(chart.pcp),
      reaction: [{ manifestation: [concept(SNOMED, allergy.reaction)], severity: allergy.criticality === 'high' ? 'severe' : 'mild' }],
    });
  }
}

function immunization(chart: Chart, vaccine: Code, at: number): void {
  add(chart, {
    resourceType: 'Immunization',
    id: nextId(chart, 'imm'),
    status: 'completed',
    vaccineCode: concept(CVX, vaccine),
    patient: ref(chart.patient),
    occurrenceDateTime: isoDateTime(at),
    primarySource: true,
    location: ref(chart.sys.clinic),
    performer: [{ actor: ref(chart.pcp) }],
  });
}

/** Times of a shot on a weekday in [from, from + days), in clinic hours. */
const shotAt = (rng: Rng, from: number, days: number): number => weekday(from + rng.int(0, days - 1) * DAY) + rng.int(9 * 4, 16 * 4) * 15 * MINUTE;
const inHistory = (chart: Chart, at: number): boolean => at >= chart.historyStart && at < ANCHOR;

/** Influenza each autumn most years (but the year the shared person's shot is a shared fact), COVID-19 in 2021, Tdap, pneumococcal. */
function recordImmunizations(chart: Chart, skipFluSeason?: number): void {
  const { rng } = chart;
  const shots: [Code, number][] = [];
  for (let year = new Date(chart.historyStart).getUTCFullYear(); year < ANCHOR_YEAR; year++) {
    const at = shotAt(rng, Date.UTC(year, 8, 15), 70);
    if (year !== skipFluSeason && rng.chance(0.7) && inHistory(chart, at)) shots.push([VACCINES.influenza, at]);
  }
  const covid = shotAt(rng, Date.UTC(2021, 2, 1), 90);
  if (rng.chance(0.75) && inHistory(chart, covid)) {
    shots.push([VACCINES.covid, covid], [VACCINES.covid, covid + 21 * DAY]);
    if (rng.chance(0.5)) shots.push([VACCINES.covid, shotAt(rng, Date.UTC(2021, 10, 1), 45)]);
  }
  const tdap = shotAt(rng, chart.historyStart, Math.max(1, Math.floor((ANCHOR - chart.historyStart) / DAY)));
  if (rng.chance((ANCHOR - chart.historyStart) / (10 * YEAR))) shots.push([VACCINES.tdap, tdap]);
  const sixtyFive = chart.person.birth + 65 * YEAR + 30 * DAY;
  if (inHistory(chart, sixtyFive) && rng.chance(0.7)) shots.push([VACCINES.pneumococcal, shotAt(rng, sixtyFive, 20)]);
  shots.sort((a, b) => a[1] - b[1]);
  for (const [vaccine, at] of shots) if (inHistory(chart, at)) immunization(chart, vaccine, at);
}

/** One count a day for the 30 days before the anchor, from a phone or watch: fewer at weekends. */
function recordSteps(chart: Chart): void {
  const code = concept(LOINC, { code: STEPS_LOINC, display: 'Steps' });
  for (let day = ANCHOR - 30 * DAY; day < ANCHOR; day += DAY) {
    const weekend = [0, 6].includes(new Date(day).getUTCDay());
    const steps = Math.round(chart.body.dailySteps * chart.rng.real(0.7, 1.3) * (weekend ? 0.85 : 1));
    add(chart, {
      resourceType: 'Observation',
      id: nextId(chart, 'obs'),
      status: 'final',
      category: [CATEGORY.activity],
      code,
      subject: ref(chart.patient),
      effectiveDateTime: isoDate(day),
      valueQuantity: quantity(steps, 'steps', '{steps}'),
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Vendor variations (see VendorVariations), applied to a finished record

const VENDOR_CATEGORY = {
  socialHistory: concept(`${TERMINOLOGY}/observation-category`, { code: 'social-history', display: 'Social History' }),
  survey: concept(`${TERMINOLOGY}/observation-category`, { code: 'survey', display: 'Survey' }),
};
const SMOKING_STATUS: readonly Code[] = [
  { code: '266919005', display: 'Never smoked tobacco (finding)' },
  { code: '8517006', display: 'Ex-smoker (finding)' },
  { code: '77176002', display: 'Smoker (finding)' },
];
const MASKED = concept(`${TERMINOLOGY}/data-absent-reason`, { code: 'masked', display: 'Masked' });

function applyVariations(chart: Chart, personKey: string, v: VendorVariations): void {
  const rng = createRng(`${chart.sys.seed}:vendor:${personKey}`);
  if (v.moreCategories) moreCategories(chart, rng);
  if (v.noteBinaries?.length) noteBinaries(chart, v.noteBinaries);
  if (v.enteredInError) enterInError(chart, rng, v.enteredInError, v.maskEnteredInError ?? false);
  if (v.procedureWithoutStatus && chart.index === 1) {
    const first = chart.resources.find((r): r is Procedure => r.resourceType === 'Procedure');
    if (first) delete (first as { status?: string }).status;
  }
}

/** Smoking status at each check-up (one status a patient), a PHQ-2 score with each depression screening. */
function moreCategories(chart: Chart, rng: Rng): void {
  const roll = rng.next();
  const smoking = SMOKING_STATUS[roll < 0.6 ? 0 : roll < 0.85 ? 1 : 2];
  for (const r of [...chart.resources]) {
    if (r.resourceType === 'Encounter' && r.type?.[0].coding?.[0].code === ENCOUNTER_TYPES.checkup.code && r.period?.start) {
      const code = concept(LOINC, { code: '72166-2', display: 'Tobacco smoking status' });
      add(chart, { ...observation(chart, r, VENDOR_CATEGORY.socialHistory, code, Date.parse(r.period.start)), valueCodeableConcept: concept(SNOMED, smoking) });
    }
    if (r.resourceType === 'Procedure' && r.code?.coding?.[0].code === PROCEDURES.depressionScreening.code && r.performedDateTime && r.encounter) {
      const encounter = chart.resources.find((e): e is Encounter => `Encounter/${e.id}` === r.encounter?.reference);
      if (!encounter) continue;
      const code = concept(LOINC, { code: '55758-7', display: 'Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]' });
      const score = rng.chance(0.8) ? rng.int(0, 2) : rng.int(3, 6);
      add(chart, { ...observation(chart, encounter, VENDOR_CATEGORY.survey, code, Date.parse(r.performedDateTime)), valueInteger: score });
    }
  }
}

/** Each note's inline text becomes Binary renditions, linked by relative urls. */
function noteBinaries(chart: Chart, formats: readonly ('text/html' | 'application/pdf')[]): void {
  for (const doc of chart.resources.filter((r): r is DocumentReference => r.resourceType === 'DocumentReference')) {
    const inline = doc.content[0].attachment;
    const text = Buffer.from(inline.data ?? '', 'base64').toString('utf8');
    doc.content = formats.map((contentType) => {
      const bytes = contentType === 'text/html' ? Buffer.from(noteHtml(text), 'utf8') : notePdf(text);
      const binary = add<Binary>(chart, { resourceType: 'Binary', id: nextId(chart, 'bin'), contentType, securityContext: ref(chart.patient), data: bytes.toString('base64') });
      return { attachment: { contentType, url: `Binary/${binary.id}`, size: bytes.length, title: inline.title, creation: inline.creation } };
    });
  }
}

/** Marks a share of each type's resources entered-in-error; masked, an Observation loses its values. */
function enterInError(chart: Chart, rng: Rng, shares: NonNullable<VendorVariations['enteredInError']>, mask: boolean): void {
  const withoutValue = (o: Record<string, unknown>): void => {
    for (const k of Object.keys(o)) if (k.startsWith('value')) delete o[k];
    o.dataAbsentReason = MASKED;
  };
  for (const r of chart.resources) {
    const share = shares[r.resourceType as keyof typeof shares];
    if (share === undefined || !rng.chance(share)) continue;
    (r as { status: string }).status = 'entered-in-error';
    if (r.resourceType !== 'Observation' || !mask) continue;
    delete r.interpretation;
    if (r.component) for (const c of r.component) withoutValue(c as unknown as Record<string, unknown>);
    else withoutValue(r as unknown as Record<string, unknown>);
  }
}

// ---------------------------------------------------------------------------------------------
// Patients

/** The shared person's demographics come from this seed, the same at every system. */
const SHARED_PERSON_SEED = 'tributary:sandbox:shared-person';
/** Recorded alike at every system that has the shared person. */
const SHARED_FACTS = {
  hypertensionOnset: Date.UTC(2019, 3, 12),
  fluShot: Date.UTC(2024, 9, 8, 15, 30),
  allergy: PENICILLIN_ALLERGY,
};

interface PatientSpec {
  index: number;
  personKey: string;
  person: Person;
  rng: Rng;
  chronic: Chronic[];
  allergies: AllergyDef[];
  shared: boolean;
}

function buildPatient(sys: SystemContext, spec: PatientSpec, taken: Set<string>): SandboxPatient {
  const { rng, person } = spec;
  const username = uniqueUsername(person, taken);
  const pcp = rng.pick(sys.primaryCare);
  const mrn = String(sys.mrnBase + spec.index * 100 + rng.int(0, 99));
  const patient = createPatientResource(sys, spec.index, person, mrn, `${username}@example.com`, pcp);
  const historyStart = Math.max(ANCHOR - Math.round(sys.years * 365) * DAY, person.birth + 18 * YEAR);
  const chart: Chart = {
    sys,
    rng,
    index: spec.index,
    person,
    patient,
    pcp,
    historyStart,
    body: createBody(rng, person, spec.chronic.map((c) => c.def.key)),
    chronic: spec.chronic,
    allergies: spec.allergies,
    counters: new Map(),
    resources: [],
  };
  const visits = planVisits(chart);
  recordProblems(chart, visits);
  recordAllergies(chart);
  for (const visit of visits) recordVisit(chart, visit);
  const fluSeason = new Date(SHARED_FACTS.fluShot).getUTCFullYear();
  recordImmunizations(chart, spec.shared ? fluSeason : undefined);
  if (spec.shared) immunization(chart, VACCINES.influenza, SHARED_FACTS.fluShot);
  recordSteps(chart);
  if (sys.vendor) applyVariations(chart, spec.personKey, sys.vendor);
  return { personKey: spec.personKey, username, password: `${username}${ANCHOR_YEAR}`, resources: [patient, ...chart.resources] };
}

function ordinarySpec(sys: SystemContext, seed: string, n: number): PatientSpec {
  const rng = createRng(`${seed}:patient:${n}`);
  const minAge = Math.max(22, Math.ceil(sys.years) + 18);
  const city = rng.chance(0.85) ? sys.city : rng.pick(CITIES);
  const person = createPerson(rng, city, minAge, Math.max(85, minAge + 30));
  const historyStart = Math.max(ANCHOR - Math.round(sys.years * 365) * DAY, person.birth + 18 * YEAR);
  const age = yearsBetween(person.birth, ANCHOR);
  const chronic = drawChronic(rng, age).map((key) => ({ def: CHRONIC[key], onset: drawOnset(rng, person, historyStart) }));
  return { index: n, personKey: `${sys.idPrefix}-${n}`, person, rng, chronic, allergies: drawAllergies(rng), shared: false };
}

function sharedSpec(sys: SystemContext, seed: string): PatientSpec {
  const demographics = createRng(SHARED_PERSON_SEED);
  const person = createPerson(demographics, demographics.pick(CITIES), 45, 60);
  // Their record at this system is this system's own, apart from the shared facts.
  const rng = createRng(`${seed}:patient:shared`);
  const historyStart = Math.max(ANCHOR - Math.round(sys.years * 365) * DAY, person.birth + 18 * YEAR);
  const others = drawChronic(rng, yearsBetween(person.birth, ANCHOR)).filter((key) => key !== 'hypertension');
  const chronic: Chronic[] = [
    { def: CHRONIC.hypertension, onset: SHARED_FACTS.hypertensionOnset },
    ...others.map((key) => ({ def: CHRONIC[key], onset: drawOnset(rng, person, historyStart) })),
  ];
  return { index: 0, personKey: 'shared', person, rng, chronic, allergies: [SHARED_FACTS.allergy], shared: true };
}

function checkOptions(opts: GenerateOptions, years: number): void {
  if (!/^[A-Za-z0-9.-]{1,32}$/.test(opts.idPrefix)) throw new Error(`idPrefix must be 1 to 32 of [A-Za-z0-9.-], got ${JSON.stringify(opts.idPrefix)}`);
  if (!Number.isInteger(opts.patients) || opts.patients < 0) throw new Error(`patients must be a whole number ≥ 0, got ${opts.patients}`);
  if (!(years > 0 && years <= 60)) throw new Error(`years must be in (0, 60], got ${years}`);
}

/** Generates one sandbox health system: its shared resources and its patients (the shared person first). */
export function generateSystem(opts: GenerateOptions): GeneratedSystem {
  const years = opts.years ?? 5;
  checkOptions(opts, years);
  const sys = createSystem(opts, years);
  const taken = new Set<string>();
  const specs: PatientSpec[] = [];
  if (opts.sharedPerson ?? true) specs.push(sharedSpec(sys, opts.seed));
  for (let n = 1; n <= opts.patients; n++) specs.push(ordinarySpec(sys, opts.seed, n));
  return { shared: sharedResources(sys), patients: specs.map((spec) => buildPatient(sys, spec, taken)) };
}
