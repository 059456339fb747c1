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
import type { GeneratedSystem, GenerateOptions, SandboxPatient } from './generate/options.ts';
import { ANCHOR, ANCHOR_YEAR, createRng, DAY, YEAR, yearsBetween, type Rng } from './generate/random.ts';
import { CHRONIC, CITIES, PENICILLIN_ALLERGY, VACCINES, type AllergyDef } from './generate/catalogs.ts';
import { createPerson, uniqueUsername, type Person } from './generate/people.ts';
import { createSystem, sharedResources, type SystemContext } from './generate/organization.ts';
import { createBody, createPatientResource, drawAllergies, drawChronic, drawOnset, type Chart, type Chronic } from './generate/chart.ts';
import { planVisits } from './generate/plan-visits.ts';
import { recordVisit } from './generate/visit-record.ts';
import { immunization, recordAllergies, recordImmunizations, recordProblems, recordSteps } from './generate/outside-visits.ts';
import { applyVariations } from './generate/vendor-variations.ts';

export { STEPS_LOINC, type GeneratedSystem, type GenerateOptions, type SandboxPatient, type VendorVariations } from './generate/options.ts';

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
    body: createBody(
      rng,
      person,
      spec.chronic.map((c) => c.def.key),
    ),
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
  if (!/^[A-Za-z0-9.-]{1,32}$/.test(opts.idPrefix))
    throw new Error(`idPrefix must be 1 to 32 of [A-Za-z0-9.-], got ${JSON.stringify(opts.idPrefix)}`);
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
