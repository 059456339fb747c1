/**
 * A patient's chart as the sandbox records generator (src/sandbox/generate.ts) builds it: its ids, the Patient,
 * the body, and which problems and allergies the patient has.
 */
import type { Condition, MedicationRequest, Patient, Practitioner, Resource } from '@medplum/fhirtypes';
import { ANCHOR, clamp, DAY, isoDate, isoDateTime, round, YEAR, yearsBetween, type Rng } from './random.ts';
import {
  ALLERGIES,
  ref,
  TERMINOLOGY,
  US_CORE,
  type AcuteDef,
  type AllergyDef,
  type ChronicDef,
  type ChronicKey,
  type VisitKind,
} from './catalogs.ts';
import { ethnicityExtension, raceExtension, type Person } from './people.ts';
import type { SystemContext } from './organization.ts';

export interface Chronic {
  def: ChronicDef;
  onset: number;
  condition?: Condition;
  /** The latest order of its medication; the ones before it are completed. */
  order?: MedicationRequest;
}

export interface Visit {
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

export interface Chart {
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
export function nextId(chart: Chart, kind: string): string {
  const n = (chart.counters.get(kind) ?? 0) + 1;
  chart.counters.set(kind, n);
  return `${chart.sys.idPrefix}-${kind}-${chart.index}-${n}`;
}

export function add<T extends Resource>(chart: Chart, resource: T): T {
  chart.resources.push(resource);
  return resource;
}

export const has = (chart: Chart, key: ChronicKey, at: number): boolean => chart.chronic.some((c) => c.def.key === key && c.onset <= at);
export const treated = (chart: Chart, key: ChronicKey, at: number): boolean =>
  chart.chronic.some((c) => c.def.key === key && c.order?.authoredOn !== undefined && c.order.authoredOn <= isoDateTime(at));
export const ageAt = (chart: Chart, at: number): number => Math.floor(yearsBetween(chart.person.birth, at));
export const female = (chart: Chart): boolean => chart.person.gender === 'female';

export function createPatientResource(sys: SystemContext, index: number, person: Person, mrn: string, email: string, pcp: Practitioner): Patient {
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

export function createBody(rng: Rng, person: Person, chronic: ChronicKey[]): Body {
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
export function drawChronic(rng: Rng, age: number): ChronicKey[] {
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

export function drawOnset(rng: Rng, person: Person, historyStart: number): number {
  const earliest = Math.max(person.birth + 18 * YEAR, historyStart - 8 * YEAR);
  const latest = ANCHOR - 90 * DAY;
  return earliest >= latest ? latest : Math.floor(rng.real(earliest, latest) / DAY) * DAY;
}

export function drawAllergies(rng: Rng): AllergyDef[] {
  return ALLERGIES.filter(() => rng.chance(0.12));
}
