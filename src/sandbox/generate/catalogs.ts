/**
 * Code systems and catalogs of the sandbox records generator (src/sandbox/generate.ts): cities, names by heritage,
 * medications, problems, allergies, vaccines, procedures, visit kinds and note types.
 */
import type { CodeableConcept, Quantity, Reference, Resource } from '@medplum/fhirtypes';

export const SNOMED = 'http://snomed.info/sct';
export const LOINC = 'http://loinc.org';
export const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';
export const CVX = 'http://hl7.org/fhir/sid/cvx';
const UCUM = 'http://unitsofmeasure.org';
export const NPI = 'http://hl7.org/fhir/sid/us-npi';
export const OMB = 'urn:oid:2.16.840.1.113883.6.238';
export const TERMINOLOGY = 'http://terminology.hl7.org/CodeSystem';
export const US_CORE = 'http://hl7.org/fhir/us/core/StructureDefinition';

export interface Code {
  code: string;
  display: string;
}

export function concept(system: string, { code, display }: Code, text?: string): CodeableConcept {
  return { coding: [{ system, code, display }], ...(text ? { text } : {}) };
}

export const ref = <T extends Resource>(resource: T): Reference<T> => ({ reference: `${resource.resourceType}/${resource.id}` });
export const quantity = (value: number, unit: string, code = unit): Quantity => ({ value, unit, system: UCUM, code });

export interface City {
  city: string;
  state: string;
  zips: readonly string[];
  areaCode: string;
}

export const CITIES: readonly City[] = [
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

export const STREETS = [
  'Main St',
  'Oak Ave',
  'Maple Dr',
  'Cedar Ln',
  'Park Blvd',
  'Washington St',
  'Lake Rd',
  'Hillcrest Ave',
  'Pine St',
  'River Rd',
  'Elm St',
  'Highland Ave',
  'Mesa Dr',
  'Willow Way',
];

/** Names go with the race and ethnicity a person is recorded with, loosely, as they do in the US. */
export interface Heritage {
  weight: number;
  race: Code;
  hispanic: boolean;
  female: readonly string[];
  male: readonly string[];
  family: readonly string[];
}

export const HERITAGES: readonly Heritage[] = [
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

export const HISPANIC: Code = { code: '2135-2', display: 'Hispanic or Latino' };
export const NOT_HISPANIC: Code = { code: '2186-5', display: 'Not Hispanic or Latino' };

export interface MedicationDef extends Code {
  /** How the note names it. */
  short: string;
  dosage: string;
  asNeeded: boolean;
}

const LISINOPRIL: MedicationDef = {
  code: '314076',
  display: 'lisinopril 10 MG Oral Tablet',
  short: 'lisinopril 10 mg daily',
  dosage: 'Take 1 tablet by mouth once daily.',
  asNeeded: false,
};
const ATORVASTATIN: MedicationDef = {
  code: '617311',
  display: 'atorvastatin 40 MG Oral Tablet',
  short: 'atorvastatin 40 mg at bedtime',
  dosage: 'Take 1 tablet by mouth once daily at bedtime.',
  asNeeded: false,
};
const METFORMIN: MedicationDef = {
  code: '860975',
  display: '24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet',
  short: 'metformin ER 500 mg daily',
  dosage: 'Take 1 tablet by mouth once daily with the evening meal.',
  asNeeded: false,
};
const ALBUTEROL: MedicationDef = {
  code: '745679',
  display: '200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler',
  short: 'albuterol inhaler as needed',
  dosage: 'Inhale 2 puffs by mouth every 4 to 6 hours as needed for wheezing.',
  asNeeded: true,
};
const ACETAMINOPHEN: MedicationDef = {
  code: '313782',
  display: 'acetaminophen 325 MG Oral Tablet',
  short: 'acetaminophen as needed',
  dosage: 'Take 2 tablets by mouth every 6 hours as needed for pain or fever.',
  asNeeded: true,
};
export const PENICILLIN_V: MedicationDef = {
  code: '834102',
  display: 'penicillin V potassium 500 MG Oral Tablet',
  short: 'penicillin V 500 mg twice daily for 10 days',
  dosage: 'Take 1 tablet by mouth twice daily for 10 days.',
  asNeeded: false,
};
const IBUPROFEN: MedicationDef = {
  code: '310965',
  display: 'ibuprofen 200 MG Oral Tablet',
  short: 'ibuprofen as needed',
  dosage: 'Take 2 tablets by mouth every 8 hours as needed for pain.',
  asNeeded: true,
};

export type ChronicKey = 'hypertension' | 'hyperlipidemia' | 'diabetes' | 'prediabetes' | 'asthma' | 'sinusitis';

export interface ChronicDef extends Code {
  key: ChronicKey;
  text: string;
  medication?: MedicationDef;
}

export const CHRONIC: Record<ChronicKey, ChronicDef> = {
  hypertension: {
    key: 'hypertension',
    code: '38341003',
    display: 'Hypertensive disorder, systemic arterial (disorder)',
    text: 'Hypertension',
    medication: LISINOPRIL,
  },
  hyperlipidemia: { key: 'hyperlipidemia', code: '55822004', display: 'Hyperlipidemia (disorder)', text: 'Hyperlipidemia', medication: ATORVASTATIN },
  diabetes: {
    key: 'diabetes',
    code: '44054006',
    display: 'Diabetes mellitus type 2 (disorder)',
    text: 'Type 2 diabetes mellitus',
    medication: METFORMIN,
  },
  prediabetes: { key: 'prediabetes', code: '714628002', display: 'Prediabetes (finding)', text: 'Prediabetes' },
  asthma: { key: 'asthma', code: '195967001', display: 'Asthma (disorder)', text: 'Asthma', medication: ALBUTEROL },
  sinusitis: { key: 'sinusitis', code: '40055000', display: 'Chronic sinusitis (disorder)', text: 'Chronic sinusitis' },
};

type Setting = 'acute' | 'emergency' | 'inpatient';

export interface AcuteDef extends Code {
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
  {
    code: '195662009',
    display: 'Acute viral pharyngitis (disorder)',
    text: 'Acute viral pharyngitis',
    setting: 'acute',
    days: 7,
    fever: true,
    medication: ACETAMINOPHEN,
  },
  {
    code: '43878008',
    display: 'Streptococcal sore throat (disorder)',
    text: 'Strep throat',
    setting: 'acute',
    days: 10,
    fever: true,
    medication: PENICILLIN_V,
    procedure: THROAT_CULTURE,
  },
  {
    code: '10509002',
    display: 'Acute bronchitis (disorder)',
    text: 'Acute bronchitis',
    setting: 'acute',
    days: 21,
    fever: true,
    medication: ACETAMINOPHEN,
  },
  {
    code: '10509002',
    display: 'Acute bronchitis (disorder)',
    text: 'Acute bronchitis',
    setting: 'emergency',
    days: 21,
    fever: true,
    medication: ACETAMINOPHEN,
  },
  {
    code: '44465007',
    display: 'Sprain of ankle (disorder)',
    text: 'Ankle sprain',
    setting: 'emergency',
    days: 28,
    fever: false,
    medication: IBUPROFEN,
  },
  { code: '233604007', display: 'Pneumonia (disorder)', text: 'Pneumonia', setting: 'inpatient', days: 30, fever: true },
];

export const acuteIn = (setting: Setting): AcuteDef[] => ACUTE.filter((a) => a.setting === setting);

export interface AllergyDef extends Code {
  category: 'medication' | 'food' | 'environment';
  criticality: 'low' | 'high';
  reaction: Code;
}

export const PENICILLIN_ALLERGY: AllergyDef = {
  code: '91936005',
  display: 'Allergy to penicillin (finding)',
  category: 'medication',
  criticality: 'high',
  reaction: { code: '271807003', display: 'Eruption of skin (disorder)' },
};
export const ALLERGIES: readonly AllergyDef[] = [
  PENICILLIN_ALLERGY,
  {
    code: '91935009',
    display: 'Allergy to peanut (finding)',
    category: 'food',
    criticality: 'high',
    reaction: { code: '39579001', display: 'Anaphylaxis (disorder)' },
  },
  {
    code: '300916003',
    display: 'Latex allergy (finding)',
    category: 'environment',
    criticality: 'low',
    reaction: { code: '247472004', display: 'Wheal (finding)' },
  },
  {
    code: '419263009',
    display: 'Allergy to tree pollen (finding)',
    category: 'environment',
    criticality: 'low',
    reaction: { code: '267101005', display: 'Nasal congestion (finding)' },
  },
];

export const VACCINES = {
  influenza: { code: '140', display: 'Influenza, seasonal, injectable, preservative free' },
  covid: { code: '208', display: 'SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose' },
  tdap: { code: '115', display: 'Tdap' },
  pneumococcal: { code: '133', display: 'Pneumococcal conjugate PCV 13' },
} satisfies Record<string, Code>;

export const PROCEDURES = {
  assessment: { code: '710824005', display: 'Assessment of health and social care needs (procedure)' },
  depressionScreening: { code: '171207006', display: 'Depression screening (procedure)' },
  reconciliation: { code: '430193006', display: 'Medication reconciliation (procedure)' },
  colonoscopy: { code: '73761001', display: 'Colonoscopy (procedure)' },
} satisfies Record<string, Code>;

export type VisitKind = 'checkup' | 'followup' | Setting | 'colonoscopy';

export const ENCOUNTER_TYPES: Record<VisitKind, Code> = {
  checkup: { code: '185349003', display: 'Encounter for check up (procedure)' },
  followup: { code: '185347001', display: 'Encounter for problem (procedure)' },
  acute: { code: '185345009', display: 'Encounter for symptom (procedure)' },
  emergency: { code: '50849002', display: 'Emergency room admission (procedure)' },
  inpatient: { code: '32485007', display: 'Hospital admission (procedure)' },
  colonoscopy: { code: '371883000', display: 'Outpatient procedure (procedure)' },
};

export const ENCOUNTER_CLASSES: Record<VisitKind, Code> = {
  checkup: { code: 'AMB', display: 'ambulatory' },
  followup: { code: 'AMB', display: 'ambulatory' },
  acute: { code: 'AMB', display: 'ambulatory' },
  colonoscopy: { code: 'AMB', display: 'ambulatory' },
  emergency: { code: 'EMER', display: 'emergency' },
  inpatient: { code: 'IMP', display: 'inpatient encounter' },
};

export const NOTE_TYPES = {
  progress: { code: '11506-3', display: 'Progress note' },
  historyAndPhysical: { code: '34117-2', display: 'History and physical note' },
} satisfies Record<string, Code>;
