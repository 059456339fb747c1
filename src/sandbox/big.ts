/**
 * A very big sandbox patient, for the first-sync tests and benchmarks of large records (50,000
 * resources and more): made once per size in a sandbox system, on demand, quickly. For
 * `POST /admin/sandbox/{name}/big-patient {"resources": N}`.
 *
 *   makeBigPatient(deps: BigPatientDeps, appId: number, o: { resources: number; idPrefix: string }): Promise<BigPatient>
 *   bigRecord(o: { resources: number; idPrefix: string }): Generator<Resource>  (the records, for tests)
 *
 * The record is about N resources (exactly N when N ≥ 3): the Patient, an Organization and a
 * Practitioner of its own, and visits back from 2026-01-01, each an Encounter with eight vital
 * signs, a four-test lab panel and its DiagnosticReport, a smoking status (social-history), a PHQ-2
 * score (survey), a step count (activity), a Procedure, a diagnosis, a MedicationRequest and a
 * note (DocumentReference, text inline), and an Immunization at every tenth: mostly Observations
 * across categories, as a real long chart. Deterministic from N and the prefix. Ids are
 * `${idPrefix}-big${N}-{kind}-{n}`.
 *
 * Writes go in transactions of BATCH resources (the bulk writer, no validation: the unit test
 * validates the record), so memory stays flat; the patient's password is set last, so a patient
 * that can sign in is complete. A second call with the same N answers the same patient at once; a
 * crash half-way is finished by the next call (the writes that were done are unchanged, so free).
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { CodeableConcept, Resource } from '@medplum/fhirtypes';
import { writeResources, type BulkDeps } from '../fhir/bulk.ts';
import type { AuthStore } from '../auth/store.ts';
import { inTransaction } from '../storage/transaction.ts';
import * as sql from './sql.ts';

export const BIG_PATIENT_MAX = 100_000;
/** Resources per transaction. */
const BATCH = 2_000;
const IN_FLIGHT = 2;

export interface BigPatientDeps {
  pool: pg.Pool;
  bulk: BulkDeps;
  auth: Pick<AuthStore, 'createUser' | 'findUser' | 'setPassword'>;
}

export interface BigPatient {
  username: string;
  password: string;
  /** The Patient's id at the sandbox system (the SMART patient context of its sign-in). */
  patientId: string;
  /** How many resources its record holds. */
  resources: number;
}

export interface BigOptions {
  /** About how many resources, 1 to 100,000. */
  resources: number;
  /** The sandbox system's id prefix. */
  idPrefix: string;
}

/** The `resources` of a request body, or a sentence saying what is wrong with it. */
export function parseBigPatient(body: unknown): number | string {
  const n = (body as { resources?: unknown } | null)?.resources;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > BIG_PATIENT_MAX)
    return `The body is {"resources": N}, N a whole number from 1 to ${BIG_PATIENT_MAX}.`;
  return n;
}

const LOINC = 'http://loinc.org';
const SNOMED = 'http://snomed.info/sct';
const UCUM = 'http://unitsofmeasure.org';
const TERMINOLOGY = 'http://terminology.hl7.org/CodeSystem';
const DAY = 86_400_000;
const ANCHOR = Date.UTC(2026, 0, 1);
/** Resources a visit adds at least (every tenth one more, its Immunization). */
const PER_VISIT = 21;
const SHARED = 3;

/** A reference as any type's element takes it. */
type Ref = { reference: string };
const cc = (system: string, code: string, display: string): CodeableConcept => ({ coding: [{ system, code, display }], text: display });
const category = (code: string, display: string): CodeableConcept[] => [
  { coding: [{ system: `${TERMINOLOGY}/observation-category`, code, display }] },
];
const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
const qty = (value: number, unit: string, code = unit) => ({ value, unit, system: UCUM, code });

const VITALS: readonly [string, string, string, string, number, number][] = [
  ['8867-4', 'Heart rate', 'beats/minute', '/min', 58, 92],
  ['9279-1', 'Respiratory rate', 'breaths/minute', '/min', 12, 18],
  ['8310-5', 'Body temperature', 'Cel', 'Cel', 36.3, 37.4],
  ['8302-2', 'Body height', 'cm', 'cm', 171, 172],
  ['29463-7', 'Body weight', 'kg', 'kg', 72, 86],
  ['39156-5', 'Body mass index (BMI) [Ratio]', 'kg/m2', 'kg/m2', 24, 29],
  ['59408-5', 'Oxygen saturation in Arterial blood by Pulse oximetry', '%', '%', 95, 99],
];
const LABS: readonly [string, string, string, number, number][] = [
  ['2339-0', 'Glucose [Mass/volume] in Blood', 'mg/dL', 72, 130],
  ['2160-0', 'Creatinine [Mass/volume] in Serum or Plasma', 'mg/dL', 0.7, 1.2],
  ['2951-2', 'Sodium [Moles/volume] in Serum or Plasma', 'mmol/L', 136, 144],
  ['2823-3', 'Potassium [Moles/volume] in Serum or Plasma', 'mmol/L', 3.6, 5.0],
];

/** A number in [min, max] from a hash of the key: the same key, the same number. */
function value(key: string, min: number, max: number, decimals: number): number {
  const u = createHash('sha256').update(key).digest().readUInt32LE(0) / 2 ** 32;
  return Math.round((min + u * (max - min)) * 10 ** decimals) / 10 ** decimals;
}

/** The big patient's record, resource by resource (references point back: a target comes before what cites it). */
export function* bigRecord(o: BigOptions): Generator<Resource> {
  const p = `${o.idPrefix}-big${o.resources}`;
  const patient: Ref = { reference: `Patient/${p}-pat` };
  const org: Ref = { reference: `Organization/${p}-org` };
  const prac: Ref = { reference: `Practitioner/${p}-prac` };
  let made = 0;
  const take = function* (r: Resource): Generator<Resource> {
    if (made >= Math.max(o.resources, SHARED)) return;
    made++;
    yield r;
  };
  yield* take({
    resourceType: 'Patient',
    id: `${p}-pat`,
    identifier: [{ system: `urn:tributary:sandbox:${o.idPrefix}:mrn`, value: `BIG${o.resources}` }],
    active: true,
    name: [{ use: 'official', family: 'Longchart', given: ['Bertha'] }],
    gender: 'female',
    birthDate: '1941-03-02',
    managingOrganization: org,
  });
  yield* take({ resourceType: 'Organization', id: `${p}-org`, active: true, name: 'Big Record Clinic' });
  yield* take({ resourceType: 'Practitioner', id: `${p}-prac`, active: true, name: [{ family: 'Chartwell', given: ['Ada'], prefix: ['Dr.'] }] });
  const visits = Math.max(1, Math.ceil((o.resources - SHARED) / PER_VISIT));
  // Visits spread evenly over the 60 years before the anchor, the oldest first.
  const step = Math.max(DAY / 24, Math.floor((60 * 365 * DAY) / visits));
  for (let v = 1; v <= visits && made < o.resources; v++) {
    const start = ANCHOR - (visits - v + 1) * step;
    const at = iso(start);
    const id = (kind: string, k = 0) => `${p}-${kind}-${v}${k ? `-${k}` : ''}`;
    const encounter: Ref = { reference: `Encounter/${id('enc')}` };
    yield* take({
      resourceType: 'Encounter',
      id: id('enc'),
      status: 'finished',
      class: { system: `${TERMINOLOGY}/v3-ActCode`, code: 'AMB', display: 'ambulatory' },
      type: [cc(SNOMED, '185349003', 'Encounter for check up (procedure)')],
      subject: patient,
      participant: [{ individual: prac }],
      period: { start: at, end: iso(start + 30 * 60_000) },
      serviceProvider: org,
    });
    const obs = (k: number, cat: CodeableConcept[], code: CodeableConcept, rest: Record<string, unknown>): Resource =>
      ({
        resourceType: 'Observation',
        id: id('obs', k),
        status: 'final',
        category: cat,
        code,
        subject: patient,
        encounter,
        effectiveDateTime: at,
        ...rest,
      }) as Resource;
    const vitals = category('vital-signs', 'Vital Signs');
    yield* take(
      obs(1, vitals, cc(LOINC, '85354-9', 'Blood pressure panel with all children optional'), {
        component: [
          { code: cc(LOINC, '8480-6', 'Systolic blood pressure'), valueQuantity: qty(value(`${id('obs', 1)}s`, 105, 150, 0), 'mm[Hg]') },
          { code: cc(LOINC, '8462-4', 'Diastolic blood pressure'), valueQuantity: qty(value(`${id('obs', 1)}d`, 65, 95, 0), 'mm[Hg]') },
        ],
      }),
    );
    for (const [k, [code, display, unit, ucum, min, max]] of VITALS.entries()) {
      yield* take(obs(k + 2, vitals, cc(LOINC, code, display), { valueQuantity: qty(value(id('obs', k + 2), min, max, 1), unit, ucum) }));
    }
    const lab = category('laboratory', 'Laboratory');
    for (const [k, [code, display, unit, min, max]] of LABS.entries()) {
      yield* take(
        obs(k + 9, lab, cc(LOINC, code, display), {
          issued: iso(start + 6 * 3_600_000),
          valueQuantity: qty(value(id('obs', k + 9), min, max, 1), unit),
        }),
      );
    }
    yield* take({
      resourceType: 'DiagnosticReport',
      id: id('dr'),
      status: 'final',
      category: [cc(`${TERMINOLOGY}/v2-0074`, 'LAB', 'Laboratory')],
      code: cc(LOINC, '51990-0', 'Basic metabolic panel - Blood'),
      subject: patient,
      encounter,
      effectiveDateTime: at,
      issued: iso(start + 6 * 3_600_000),
      performer: [org],
      result: [9, 10, 11, 12].map((k) => ({ reference: `Observation/${id('obs', k)}` })),
    });
    yield* take(
      obs(13, category('social-history', 'Social History'), cc(LOINC, '72166-2', 'Tobacco smoking status'), {
        valueCodeableConcept: cc(SNOMED, '8517006', 'Ex-smoker (finding)'),
      }),
    );
    yield* take(
      obs(14, category('survey', 'Survey'), cc(LOINC, '55758-7', 'Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]'), {
        valueInteger: Math.round(value(id('obs', 14), 0, 3, 0)),
      }),
    );
    yield* take(
      obs(15, category('activity', 'Activity'), cc(LOINC, '66334-4', 'Steps'), {
        valueQuantity: qty(Math.round(value(id('obs', 15), 2000, 9000, 0)), 'steps', '{steps}'),
      }),
    );
    yield* take({
      resourceType: 'Procedure',
      id: id('proc'),
      status: 'completed',
      code: cc(SNOMED, '171207006', 'Depression screening (procedure)'),
      subject: patient,
      encounter,
      performedDateTime: at,
      performer: [{ actor: prac }],
    });
    const condition = id('cond');
    yield* take({
      resourceType: 'Condition',
      id: condition,
      clinicalStatus: cc(`${TERMINOLOGY}/condition-clinical`, 'resolved', 'Resolved'),
      verificationStatus: cc(`${TERMINOLOGY}/condition-ver-status`, 'confirmed', 'Confirmed'),
      category: [cc(`${TERMINOLOGY}/condition-category`, 'encounter-diagnosis', 'Encounter Diagnosis')],
      code: cc(SNOMED, '444814009', 'Viral sinusitis (disorder)'),
      subject: patient,
      encounter,
      onsetDateTime: at.slice(0, 10),
      abatementDateTime: iso(start + 14 * DAY).slice(0, 10),
      recordedDate: at,
    });
    yield* take({
      resourceType: 'MedicationRequest',
      id: id('med'),
      status: 'completed',
      intent: 'order',
      medicationCodeableConcept: cc('http://www.nlm.nih.gov/research/umls/rxnorm', '313782', 'acetaminophen 325 MG Oral Tablet'),
      subject: patient,
      encounter,
      authoredOn: at,
      requester: prac,
      reasonReference: [{ reference: `Condition/${condition}` }],
      dosageInstruction: [{ text: 'Take 2 tablets by mouth every 6 hours as needed for pain or fever.', asNeededBoolean: true }],
    });
    const note = `Progress note\nDate: ${at.slice(0, 10)}\nVisit ${v} of ${visits}. Viral sinusitis; supportive care.\n`;
    yield* take({
      resourceType: 'DocumentReference',
      id: id('doc'),
      status: 'current',
      type: cc(LOINC, '11506-3', 'Progress note'),
      category: [cc('http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category', 'clinical-note', 'Clinical Note')],
      subject: patient,
      date: iso(start + 30 * 60_000),
      author: [prac],
      content: [{ attachment: { contentType: 'text/plain', data: Buffer.from(note).toString('base64'), title: 'Progress note' } }],
      context: { encounter: [encounter] },
    });
    if (v % 10 === 0) {
      yield* take({
        resourceType: 'Immunization',
        id: id('imm'),
        status: 'completed',
        vaccineCode: cc('http://hl7.org/fhir/sid/cvx', '140', 'Influenza, seasonal, injectable, preservative free'),
        patient,
        occurrenceDateTime: at,
        primarySource: true,
      });
    }
  }
}

const USERNAME = (n: number) => `bigpatient${n}`;

/** Makes the big patient of this size in the sandbox app (once), or answers the one made before. */
export async function makeBigPatient(deps: BigPatientDeps, appId: number, o: BigOptions): Promise<BigPatient> {
  if (!Number.isInteger(o.resources) || o.resources < 1 || o.resources > BIG_PATIENT_MAX)
    throw new Error(`resources is a whole number from 1 to ${BIG_PATIENT_MAX}, got ${o.resources}`);
  const username = USERNAME(o.resources);
  const out = { username, password: `${username}2026`, patientId: `${o.idPrefix}-big${o.resources}-pat` };
  const appUserId = `big-patient-${o.resources}`;
  // One maker per size at a time, across processes: a session lock held by one connection.
  const lock = await deps.pool.connect();
  try {
    await lock.query(sql.sessionLock(`big-patient:${appId}:${o.resources}`));
    const user = (await deps.auth.createUser(appId, appUserId)) ?? (await deps.auth.findUser(appId, { appUserId }))!;
    const count = async () => Number((await deps.pool.query<{ n: string }>(sql.liveResourceCount(appId, user.id))).rows[0].n);
    const { rows } = await deps.pool.query<{ done: boolean }>(sql.passwordSet(user.id));
    if (rows[0]?.done) return { ...out, resources: await count() };
    const scope = { partitionId: appId, ownerId: user.id };
    // Two batches in flight: one is indexed here while PostgreSQL writes the other.
    const inFlight = new Set<Promise<unknown>>();
    let failure: { err: unknown } | undefined;
    let batch: Resource[] = [];
    const flush = async () => {
      const wanted = batch.map((r) => ({ type: r.resourceType, id: r.id!, resource: r }));
      batch = [];
      const write = inTransaction(deps.pool, (c) => writeResources(deps.bulk, c, scope, wanted)).catch((err) => void (failure ??= { err }));
      inFlight.add(write);
      void write.finally(() => inFlight.delete(write));
      if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
    };
    for (const r of bigRecord(o)) {
      if (failure) break;
      batch.push(r);
      if (batch.length === BATCH) await flush();
    }
    if (batch.length && !failure) await flush();
    await Promise.all(inFlight);
    if (failure) throw failure.err;
    if (!(await deps.auth.setPassword(appId, user.id, out.username, out.password)))
      throw new Error(`another patient of this sandbox already has the username ${out.username}`);
    return { ...out, resources: await count() };
  } finally {
    await lock.query(sql.sessionUnlock(`big-patient:${appId}:${o.resources}`)).catch(() => {});
    lock.release();
  }
}
