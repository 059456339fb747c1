/**
 * A labelled set for de-duplication: which pairs of a person's records from two sources are one
 * record, known by construction, for measuring precision and recall (test/unit/dedup/, bench/dedup.ts).
 *
 * - The sandboxes' shared person at two systems (src/sandbox/generate.ts): the same human, their
 *   hypertension (with its onset), penicillin allergy and one flu shot recorded alike at both; the
 *   rest of each record is the system's own, and none of it is the same record.
 * - A generated second source of a person's record at one system: for each record, now and then the
 *   same record as another EHR would send it (another code system where a map is known, a date a day
 *   apart or a time minutes apart, other units, other wording, text without codes), and look-alikes
 *   that are not the same (a recurrence a year later, a dose another year, a value 10% off, another
 *   strength, the next day's measurement).
 */
import type { Coding, Resource } from '@medplum/fhirtypes';
import { generateSystem } from '../sandbox/generate.ts';
import { createRng, type Rng } from '../sandbox/generate/random.ts';
import { ICD10CM, SNOMED, SNOMED_TO_ICD10CM } from './codes.ts';
import type { Candidate } from './engine.ts';

export interface LabelledSet {
  /** Each person's records from their sources (de-duplication is per person). */
  people: Candidate[][];
  /** The pairs that are one record, as `a|b` keys (a < b). */
  truth: Set<string>;
  /** What each variation did, by the second source's key (for reports). */
  kinds: Map<string, string>;
}

const clone = <T>(r: T): T => structuredClone(r);
const shiftIso = (iso: string | undefined, ms: number): string | undefined => {
  if (!iso) return iso;
  // A date alone moves by whole days only (minutes apart, it is the same date).
  if (iso.length <= 10) return new Date(Date.parse(iso) + Math.trunc(ms / DAY) * DAY).toISOString().slice(0, 10);
  return new Date(Date.parse(iso) + ms).toISOString();
};
const DAY = 86_400_000;

/** Rewords a display the way another system might: case, "(disorder)" tags dropped, words reordered for a few. */
function reword(rng: Rng, s: string | undefined): string | undefined {
  if (!s) return s;
  const bare = s.replace(/\s*\((disorder|finding|procedure)\)/, '');
  return rng.chance(0.5) ? bare.toUpperCase() : bare;
}
function rewordCodings(rng: Rng, codings: Coding[] | undefined): void {
  for (const c of codings ?? []) c.display = reword(rng, c.display);
}

/** The same record as another EHR sends it: answers it, or null when this type is left alone. */
function duplicateOf(rng: Rng, r: Resource): { resource: Resource; kind: string } | null {
  const d = clone(r) as Resource & Record<string, unknown>;
  switch (r.resourceType) {
    case 'Condition': {
      const c = d as unknown as import('@medplum/fhirtypes').Condition;
      const sct = c.code?.coding?.find((x) => x.system === SNOMED)?.code;
      const icd = sct ? SNOMED_TO_ICD10CM[sct]?.[0] : undefined;
      if (icd && rng.chance(0.5)) {
        c.code = { coding: [{ system: ICD10CM, code: icd, display: reword(rng, c.code?.coding?.[0].display) }], text: c.code?.text };
        c.onsetDateTime = shiftIso(c.onsetDateTime, rng.chance(0.5) ? DAY : 0);
        return { resource: c, kind: 'condition: ICD-10-CM for SNOMED CT' };
      }
      if (rng.chance(0.3)) {
        // Text only, as a free-text problem list has it.
        c.code = { text: c.code?.text ?? c.code?.coding?.[0]?.display };
        return { resource: c, kind: 'condition: text only' };
      }
      rewordCodings(rng, c.code?.coding);
      c.onsetDateTime = shiftIso(c.onsetDateTime, rng.chance(0.5) ? -DAY : 0);
      return { resource: c, kind: 'condition: reworded, onset a day apart' };
    }
    case 'AllergyIntolerance': {
      const a = d as unknown as import('@medplum/fhirtypes').AllergyIntolerance;
      if (rng.chance(0.5)) {
        // Text only, the words in another order ("Penicillin allergy" for "Allergy to penicillin").
        const display = a.code?.coding?.[0].display ?? a.code?.text ?? '';
        const m = /^Allergy to (.+?)(?: \(\w+\))?$/i.exec(display);
        a.code = { text: m ? `${m[1]} allergy` : display };
        return { resource: a, kind: 'allergy: text only, reworded' };
      }
      rewordCodings(rng, a.code?.coding);
      return { resource: a, kind: 'allergy: reworded' };
    }
    case 'Immunization': {
      const i = d as unknown as import('@medplum/fhirtypes').Immunization;
      rewordCodings(rng, i.vaccineCode?.coding);
      // The CVX system by its OID, as some EHRs send it.
      if (rng.chance(0.5))
        for (const x of i.vaccineCode?.coding ?? []) if (x.system === 'http://hl7.org/fhir/sid/cvx') x.system = 'urn:oid:2.16.840.1.113883.12.292';
      i.occurrenceDateTime = rng.chance(0.5) ? i.occurrenceDateTime?.slice(0, 10) : shiftIso(i.occurrenceDateTime, 2 * 3_600_000);
      return { resource: i, kind: 'immunization: a date alone, or hours apart' };
    }
    case 'Observation': {
      const o = d as unknown as import('@medplum/fhirtypes').Observation;
      rewordCodings(rng, o.code?.coding);
      o.effectiveDateTime = shiftIso(o.effectiveDateTime, rng.int(-5, 5) * 60_000);
      const q = o.valueQuantity;
      if (q?.value !== undefined && q.code === 'kg') {
        o.valueQuantity = { value: Math.round((q.value / 0.45359237) * 1000) / 1000, unit: 'lb', system: q.system, code: '[lb_av]' };
        return { resource: o, kind: 'observation: kg as lb, minutes apart' };
      }
      if (q?.value !== undefined && q.code === 'cm') {
        o.valueQuantity = { value: Math.round((q.value / 2.54) * 1000) / 1000, unit: 'in', system: q.system, code: '[in_i]' };
        return { resource: o, kind: 'observation: cm as inches, minutes apart' };
      }
      return { resource: o, kind: 'observation: reworded, minutes apart' };
    }
    case 'MedicationRequest': {
      const m = d as unknown as import('@medplum/fhirtypes').MedicationRequest;
      if (rng.chance(0.5) && m.medicationCodeableConcept) {
        const display = m.medicationCodeableConcept.coding?.[0]?.display ?? m.medicationCodeableConcept.text;
        m.medicationCodeableConcept = { text: display };
        m.authoredOn = shiftIso(m.authoredOn, DAY);
        return { resource: m, kind: 'medication: text only, a day apart' };
      }
      return { resource: m, kind: 'medication: as is' };
    }
    case 'Procedure': {
      const p = d as unknown as import('@medplum/fhirtypes').Procedure;
      rewordCodings(rng, p.code?.coding);
      if (rng.chance(0.3)) for (const x of p.code?.coding ?? []) if (x.system === SNOMED) x.system = 'urn:oid:2.16.840.1.113883.6.96';
      return { resource: p, kind: 'procedure: reworded (SNOMED CT by its OID now and then)' };
    }
    case 'Encounter': {
      const e = d as unknown as import('@medplum/fhirtypes').Encounter;
      if (e.period) e.period = { start: shiftIso(e.period.start, 30 * 60_000), end: shiftIso(e.period.end, 30 * 60_000) };
      return { resource: e, kind: 'encounter: half an hour apart' };
    }
    case 'DiagnosticReport': {
      const r2 = d as unknown as import('@medplum/fhirtypes').DiagnosticReport;
      r2.effectiveDateTime = shiftIso(r2.effectiveDateTime, 10 * 60_000);
      return { resource: r2, kind: 'report: minutes apart' };
    }
    default:
      return null;
  }
}

/** A record like `r` that is not the same record: answers it, or null. */
function lookAlike(rng: Rng, r: Resource): { resource: Resource; kind: string } | null {
  const d = clone(r) as Resource & Record<string, unknown>;
  switch (r.resourceType) {
    case 'Condition': {
      const c = d as unknown as import('@medplum/fhirtypes').Condition;
      if (!c.onsetDateTime) return null;
      c.onsetDateTime = shiftIso(c.onsetDateTime, 400 * DAY);
      return { resource: c, kind: 'condition: a recurrence 400 days later' };
    }
    case 'AllergyIntolerance': {
      const a = d as unknown as import('@medplum/fhirtypes').AllergyIntolerance;
      const peanut = a.code?.coding?.some((x) => x.code === '91935009');
      a.code = peanut
        ? { coding: [{ system: SNOMED, code: '91936005', display: 'Allergy to penicillin (finding)' }] }
        : { coding: [{ system: SNOMED, code: '91935009', display: 'Allergy to peanut (finding)' }] };
      return { resource: a, kind: 'allergy: another substance, the same reaction' };
    }
    case 'Immunization': {
      const i = d as unknown as import('@medplum/fhirtypes').Immunization;
      i.occurrenceDateTime = shiftIso(i.occurrenceDateTime, 365 * DAY);
      return { resource: i, kind: 'immunization: the next year' };
    }
    case 'Observation': {
      const o = d as unknown as import('@medplum/fhirtypes').Observation;
      if (o.valueQuantity?.value !== undefined && rng.chance(0.5)) {
        o.valueQuantity = { ...o.valueQuantity, value: Math.round(o.valueQuantity.value * 1.1 * 100) / 100 + 1 };
        return { resource: o, kind: 'observation: a value 10% off' };
      }
      o.effectiveDateTime = shiftIso(o.effectiveDateTime, DAY + 3_600_000);
      return { resource: o, kind: 'observation: the next day' };
    }
    case 'MedicationRequest': {
      const m = d as unknown as import('@medplum/fhirtypes').MedicationRequest;
      const cc = m.medicationCodeableConcept;
      const text = cc?.coding?.[0]?.display ?? cc?.text ?? '';
      const strength = /(\d+(?:\.\d+)?)\s*MG/i.exec(text);
      if (!strength) return null;
      m.medicationCodeableConcept = { text: text.replace(strength[0], `${Number(strength[1]) * 2} MG`) };
      return { resource: m, kind: 'medication: twice the strength' };
    }
    case 'Procedure': {
      const p = d as unknown as import('@medplum/fhirtypes').Procedure;
      // A month and some hours later: not the same time of day as a record that recurs monthly.
      p.performedDateTime = shiftIso(p.performedDateTime, 30 * DAY + 5 * 3_600_000);
      return p.performedDateTime ? { resource: p, kind: 'procedure: a month later' } : null;
    }
    case 'Encounter': {
      const e = d as unknown as import('@medplum/fhirtypes').Encounter;
      if (!e.period) return null;
      e.period = { start: shiftIso(e.period.start, 3 * DAY + 7 * 3_600_000), end: shiftIso(e.period.end, 3 * DAY + 7 * 3_600_000) };
      return { resource: e, kind: 'encounter: three days later' };
    }
    default:
      return null;
  }
}

function keyed(source: string, resources: Resource[]): Candidate[] {
  return resources.map((r) => ({ key: `${source}:${r.resourceType}/${r.id}`, source, resource: r }));
}

/**
 * The labelled set: `people` generated people (default 8) with `years` of history each (default 3),
 * besides the sandboxes' shared person (5 years at each system).
 */
export function labelledSet(opts: { seed?: string; years?: number; people?: number } = {}): LabelledSet {
  const seed = opts.seed ?? 'tributary:dedup:labelled';
  const rng = createRng(seed);
  const people: Candidate[][] = [];
  const truth = new Set<string>();
  const kinds = new Map<string, string>();

  // 1. The shared person at two sandbox systems.
  const hospital = generateSystem({ seed: `${seed}:hospital`, patients: 0, idPrefix: 'hosp', systemName: 'Hospital' });
  const clinic = generateSystem({ seed: `${seed}:clinic`, patients: 0, idPrefix: 'clin', systemName: 'Clinic' });
  const [h, c] = [hospital.patients[0].resources, clinic.patients[0].resources];
  people.push([...keyed('hospital', h), ...keyed('clinic', c)]);
  const sharedFact = (r: Resource): string | null => {
    const any = r as { code?: { coding?: Coding[] }; vaccineCode?: { coding?: Coding[] }; occurrenceDateTime?: string };
    if (r.resourceType === 'Patient') return 'patient';
    if (r.resourceType === 'Condition' && any.code?.coding?.some((x) => x.code === '38341003')) return 'hypertension';
    if (r.resourceType === 'AllergyIntolerance' && any.code?.coding?.some((x) => x.code === '91936005')) return 'penicillin';
    if (r.resourceType === 'Immunization' && any.occurrenceDateTime?.startsWith('2024-10-08')) return 'flu-2024';
    return null;
  };
  for (const a of h) {
    const fa = sharedFact(a);
    if (!fa) continue;
    for (const b of c) {
      if (sharedFact(b) === fa) {
        const [ka, kb] = [`hospital:${a.resourceType}/${a.id}`, `clinic:${b.resourceType}/${b.id}`];
        truth.add(ka < kb ? `${ka}|${kb}` : `${kb}|${ka}`);
        kinds.set(kb, `shared person: ${fa}`);
      }
    }
  }

  // 2. A person at one system, and a second source of their record with controlled variation.
  const first = generateSystem({
    seed: `${seed}:first`,
    patients: opts.people ?? 8,
    idPrefix: 'one',
    systemName: 'First',
    sharedPerson: false,
    years: opts.years ?? 3,
  });
  let n = 0;
  for (const person of first.patients) {
    const record = person.resources;
    const second: Resource[] = [];
    for (const r of record) {
      const keyA = `first:${r.resourceType}/${r.id}`;
      if (r.resourceType === 'Patient') {
        const p = clone(r);
        p.id = `second-${++n}`;
        second.push(p);
        truth.add(pairKeyOf(keyA, `second:Patient/${p.id}`));
        kinds.set(`second:Patient/${p.id}`, 'patient: the same person');
        continue;
      }
      // Observations are most of a record: the rarer types are varied more often, so that each is measured.
      const rare = r.resourceType !== 'Observation';
      if (rng.chance(rare ? 0.6 : 0.3)) {
        const dup = duplicateOf(rng, r);
        if (dup) {
          dup.resource.id = `second-${++n}`;
          second.push(dup.resource);
          const keyB = `second:${dup.resource.resourceType}/${dup.resource.id}`;
          truth.add(pairKeyOf(keyA, keyB));
          kinds.set(keyB, dup.kind);
          if (!rare) continue;
        }
      }
      if (rng.chance(rare ? 0.5 : 0.2)) {
        const other = lookAlike(rng, r);
        if (other) {
          other.resource.id = `second-${++n}`;
          second.push(other.resource);
          kinds.set(`second:${other.resource.resourceType}/${other.resource.id}`, other.kind);
        }
      }
    }
    people.push([...keyed('first', record), ...keyed('second', second)]);
  }
  return { people, truth, kinds };
}

const pairKeyOf = (x: string, y: string) => (x < y ? `${x}|${y}` : `${y}|${x}`);
