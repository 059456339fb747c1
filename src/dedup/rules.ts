/**
 * The rules that say two resources of a person, from two of their sources, are one record: per
 * type, the keys a candidate must share (blocking: only resources with a key in common are compared)
 * and the comparison that scores a pair, with the tolerances of `RuleSettings` (configurable).
 *
 * A rule answers a score in [0, 1] and its name, or null when the two are not the same. Every rule
 * asks for agreement on what makes a record distinct (the code, and the time it happened where a
 * record recurs: a flu shot each autumn, a blood pressure each visit); where the two disagree on such
 * a fact, they are two records, however alike the rest.
 */
import type {
  AllergyIntolerance,
  CodeableConcept,
  Condition,
  DiagnosticReport,
  Encounter,
  Identifier,
  Immunization,
  MedicationRequest,
  MedicationStatement,
  Observation,
  Organization,
  Patient,
  Practitioner,
  Procedure,
  Quantity,
  Resource,
} from '@medplum/fhirtypes';
import { canonicalUnit } from '../indexing/ucum.ts';
import { conceptKeys, conceptTexts, CVX, LOINC, normalText, NPI, overlaps, RXNORM, canonicalSystem } from './codes.ts';

export interface RuleSettings {
  /** Condition onsets (or recorded dates) this far apart are the same onset. */
  conditionOnsetDays: number;
  /** Immunizations given this far apart are the same dose. */
  immunizationDays: number;
  /** Observations this far apart in time are the same measurement (a date alone: the same day). */
  observationMinutes: number;
  /** Values within this share of each other (after unit conversion) are the same value. */
  observationValueTolerance: number;
  /** MedicationRequests authored, MedicationStatements started, this far apart are the same. */
  medicationDays: number;
  procedureDays: number;
  encounterHours: number;
  reportHours: number;
  /** Pairs scoring at least this are linked. */
  threshold: number;
}

export const DEFAULT_SETTINGS: RuleSettings = {
  conditionOnsetDays: 3,
  immunizationDays: 1,
  observationMinutes: 10,
  observationValueTolerance: 0.01,
  medicationDays: 2,
  procedureDays: 1,
  encounterHours: 4,
  reportHours: 2,
  threshold: 0.9,
};

/** Each setting's bounds (a file outside them is refused). */
const BOUNDS: Record<keyof RuleSettings, [number, number]> = {
  conditionOnsetDays: [0, 365],
  immunizationDays: [0, 30],
  observationMinutes: [0, 24 * 60],
  observationValueTolerance: [0, 0.5],
  medicationDays: [0, 365],
  procedureDays: [0, 30],
  encounterHours: [0, 72],
  reportHours: [0, 72],
  threshold: [0.5, 1],
};

/**
 * Rule settings from a JSON object over the defaults (DEDUP_RULES_FILE); throws an Error naming
 * what is wrong: an unknown setting, or a value that is not a number within its bounds.
 */
export function ruleSettings(json: unknown): RuleSettings {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('the rules file holds one JSON object of settings.');
  const out: RuleSettings = { ...DEFAULT_SETTINGS };
  for (const [k, v] of Object.entries(json)) {
    const bounds = BOUNDS[k as keyof RuleSettings];
    if (!bounds) throw new Error(`"${k.slice(0, 50)}" is not a setting; the settings are ${Object.keys(BOUNDS).join(', ')}.`);
    if (typeof v !== 'number' || !Number.isFinite(v) || v < bounds[0] || v > bounds[1])
      throw new Error(`${k} is a number from ${bounds[0]} to ${bounds[1]}; it is ${JSON.stringify(v)?.slice(0, 50)}.`);
    out[k as keyof RuleSettings] = v;
  }
  return out;
}

export interface Verdict {
  score: number;
  rule: string;
}

export interface TypeRule<T extends Resource = Resource> {
  /** Blocking keys: two resources are compared only when they share one. */
  keys(r: T): string[];
  compare(a: T, b: T, s: RuleSettings): Verdict | null;
}

const DAY = 86_400_000;

/** An instant or date as ms, and whether it had a time (a date alone is a day). */
function when(v: string | undefined): { ms: number; dateOnly: boolean } | null {
  if (!v) return null;
  const ms = Date.parse(v.length === 4 ? `${v}-01-01` : v.length === 7 ? `${v}-01` : v);
  return Number.isNaN(ms) ? null : { ms, dateOnly: v.length <= 10 };
}
/**
 * How far apart two times are, as a share of `ms` (0: at once; 1: `ms` apart), Infinity past it, or
 * null when either is missing. A date alone is its whole day: two dates are as far apart as their
 * days, in whole days of `ms` (the same day for less than a day); a date and a time, as far as the
 * time falls outside the date's day.
 */
function gap(a: string | undefined, b: string | undefined, ms: number): number | null {
  const x = when(a);
  const y = when(b);
  if (!x || !y) return null;
  let d: number;
  let limit = ms;
  if (x.dateOnly && y.dateOnly) {
    d = Math.abs(x.ms - y.ms);
    limit = Math.floor(ms / DAY) * DAY;
    if (limit === 0) return d === 0 ? 0 : Infinity;
  } else if (x.dateOnly || y.dateOnly) {
    const [day, at] = x.dateOnly ? [x.ms, y.ms] : [y.ms, x.ms];
    d = at < day ? day - at : at >= day + DAY ? at - (day + DAY) : 0;
  } else d = Math.abs(x.ms - y.ms);
  return d <= limit ? d / limit : Infinity;
}
/** Near enough (a gap of at most 1): true, false, or null when a time is missing. */
const within = (g: number | null): boolean | null => (g === null ? null : g <= 1);
/** A score, lowered a little the further apart the two are within the tolerance (the nearer pair wins a tie). */
const scored = (score: number, g: number | null): number => Math.round((score - 0.05 * (g === null || !Number.isFinite(g) ? 0 : g)) * 1000) / 1000;

/** Blocking keys of a concept: its codes and its words (a coded record meets one with text alone). */
function conceptOrText(cc: CodeableConcept | undefined, systems?: readonly string[]): string[] {
  return [...conceptKeys(cc, systems), ...conceptTexts(cc).map((t) => `text|${t}`)];
}
/** Whether two concepts are the same: a shared code (mapped across systems), or the same words when either has no code. */
function sameConcept(a: CodeableConcept | undefined, b: CodeableConcept | undefined, systems?: readonly string[]): 'code' | 'text' | null {
  const [ka, kb] = [conceptKeys(a, systems), conceptKeys(b, systems)];
  if (overlaps(ka, kb)) return 'code';
  if (ka.length && kb.length) return null; // both coded, no code in common: two concepts
  return overlaps(conceptTexts(a), conceptTexts(b)) ? 'text' : null;
}

const condition: TypeRule<Condition> = {
  keys: (r) => conceptOrText(r.code),
  compare(a, b, s) {
    const code = sameConcept(a.code, b.code);
    if (!code) return null;
    const g = gap(a.onsetDateTime ?? a.recordedDate, b.onsetDateTime ?? b.recordedDate, s.conditionOnsetDays * DAY);
    const onset = within(g);
    if (onset === false) return null;
    // No onset on one side: the same chronic problem is likely, an acute one recurs; scored lower.
    return { score: scored((code === 'code' ? 0.7 : 0.6) + (onset ? 0.3 : 0.15), g), rule: `condition:${code}${onset ? '+onset' : ''}` };
  },
};

const allergy: TypeRule<AllergyIntolerance> = {
  keys: (r) => conceptOrText(r.code),
  compare(a, b) {
    const code = sameConcept(a.code, b.code);
    if (!code) return null;
    // An allergy is a lasting fact: the substance decides.
    return { score: code === 'code' ? 1 : 0.95, rule: `allergy:${code}` };
  },
};

const immunization: TypeRule<Immunization> = {
  keys: (r) => conceptOrText(r.vaccineCode, [CVX]),
  compare(a, b, s) {
    const code = sameConcept(a.vaccineCode, b.vaccineCode);
    if (!code) return null;
    const g = gap(a.occurrenceDateTime, b.occurrenceDateTime, s.immunizationDays * DAY);
    if (!within(g)) return null;
    return { score: scored(code === 'code' ? 1 : 0.95, g), rule: `immunization:${code}+date` };
  },
};

/** A quantity in its canonical unit (UCUM), or as written when it has none. */
function canonical(q: Quantity | undefined): { value: number; unit: string } | null {
  if (q?.value === undefined) return null;
  const code = q.code ?? q.unit ?? '';
  const c = code ? canonicalUnit(code) : null;
  return c ? { value: q.value * c.factor, unit: c.unit } : { value: q.value, unit: normalText(code) };
}
function sameValue(a: Observation, b: Observation, tolerance: number): boolean | null {
  if (a.valueQuantity || b.valueQuantity) {
    const [x, y] = [canonical(a.valueQuantity), canonical(b.valueQuantity)];
    if (!x || !y) return false;
    if (x.unit !== y.unit) return false;
    return Math.abs(x.value - y.value) <= tolerance * Math.max(Math.abs(x.value), Math.abs(y.value), 1e-9);
  }
  if (a.valueCodeableConcept || b.valueCodeableConcept) return sameConcept(a.valueCodeableConcept, b.valueCodeableConcept) !== null;
  if (a.valueString !== undefined || b.valueString !== undefined) return normalText(a.valueString) === normalText(b.valueString);
  if (a.component?.length || b.component?.length) {
    // Blood pressure and the like: each component of one, by code, the same value in the other.
    const [ca, cb] = [a.component ?? [], b.component ?? []];
    if (ca.length !== cb.length) return false;
    return ca.every((x) => {
      const y = cb.find((c) => sameConcept(c.code, x.code));
      return !!y && sameValue(x as Observation, y as Observation, tolerance) === true;
    });
  }
  return null; // neither has a value
}
/** When an Observation or DiagnosticReport was true of the person (or, without that, issued). */
const effectiveOf = (r: Observation | DiagnosticReport) => r.effectiveDateTime ?? r.effectivePeriod?.start ?? r.issued;

const observation: TypeRule<Observation> = {
  keys: (r) => conceptOrText(r.code, [LOINC]),
  compare(a, b, s) {
    const code = sameConcept(a.code, b.code, [LOINC]) ?? sameConcept(a.code, b.code);
    if (!code) return null;
    const g = gap(effectiveOf(a), effectiveOf(b), s.observationMinutes * 60_000);
    if (!within(g)) return null;
    const value = sameValue(a, b, s.observationValueTolerance);
    if (value === false) return null;
    return { score: scored(value ? 1 : 0.95, g), rule: `observation:${code}+time${value ? '+value' : ''}` };
  },
};

/** A medication's RxNorm codes, or its words (ingredient and strength, as written). */
function medicationOf(r: MedicationRequest | MedicationStatement): CodeableConcept | undefined {
  return r.medicationCodeableConcept ?? (r.medicationReference?.display ? { text: r.medicationReference.display } : undefined);
}
/** "Lisinopril 10 MG Oral Tablet" -> "lisinopril 10 mg": the first word and the strength, for text alone. */
function ingredientStrength(cc: CodeableConcept | undefined): string[] {
  return [cc?.text, ...(cc?.coding ?? []).map((c) => c.display)]
    .map((t) => normalText(t))
    .map((t) => {
      const m = /^([a-z]+)[a-z ]*?(\d+(?:\.\d+)?)\s*(mg|mcg|g|ml|unt|units?)\b/.exec(t);
      return m ? `${m[1]} ${Number(m[2])} ${m[3]}` : '';
    })
    .filter(Boolean);
}
function sameMedication(a: CodeableConcept | undefined, b: CodeableConcept | undefined): 'code' | 'text' | null {
  const [ka, kb] = [conceptKeys(a, [RXNORM]), conceptKeys(b, [RXNORM])];
  if (overlaps(ka, kb)) return 'code';
  if (overlaps(ingredientStrength(a), ingredientStrength(b))) return 'text';
  if (ka.length && kb.length) return null;
  return overlaps(conceptTexts(a), conceptTexts(b)) ? 'text' : null;
}
function medicationRule<T extends MedicationRequest | MedicationStatement>(date: (r: T) => string | undefined, name: string): TypeRule<T> {
  return {
    keys: (r) => {
      const cc = medicationOf(r);
      const codes = conceptKeys(cc, [RXNORM]);
      return [...codes, ...ingredientStrength(cc).map((t) => `med|${t}`), ...conceptTexts(cc).map((t) => `text|${t}`)];
    },
    compare(a, b, s) {
      const med = sameMedication(medicationOf(a), medicationOf(b));
      if (!med) return null;
      const g = gap(date(a), date(b), s.medicationDays * DAY);
      const at = within(g);
      if (at === false) return null;
      return { score: scored((med === 'code' ? 0.7 : 0.65) + (at ? 0.3 : 0.1), g), rule: `${name}:${med}${at ? '+date' : ''}` };
    },
  };
}

const procedure: TypeRule<Procedure> = {
  keys: (r) => conceptOrText(r.code),
  compare(a, b, s) {
    const code = sameConcept(a.code, b.code);
    if (!code) return null;
    const g = gap(a.performedDateTime ?? a.performedPeriod?.start, b.performedDateTime ?? b.performedPeriod?.start, s.procedureDays * DAY);
    if (!within(g)) return null;
    return { score: scored(code === 'code' ? 1 : 0.95, g), rule: `procedure:${code}+date` };
  },
};

const encounter: TypeRule<Encounter> = {
  // Encounters are compared by when they began: keyed by the day (and the day before, for a visit near midnight).
  keys: (r) => {
    const t = when(r.period?.start);
    if (!t) return [];
    const day = Math.floor(t.ms / DAY);
    return [`day|${day}`, `day|${day + 1}`];
  },
  compare(a, b, s) {
    const g = gap(a.period?.start, b.period?.start, s.encounterHours * 3_600_000);
    if (!within(g)) return null;
    const classA = a.class?.code;
    const classB = b.class?.code;
    if (classA && classB && classA !== classB) return null;
    const type = a.type?.length && b.type?.length ? a.type.some((x) => b.type!.some((y) => sameConcept(x, y))) : null;
    if (type === false && !(classA && classA === classB)) return null;
    return { score: scored(type ? 1 : 0.95, g), rule: `encounter:time${type ? '+type' : '+class'}` };
  },
};

const report: TypeRule<DiagnosticReport> = {
  keys: (r) => conceptOrText(r.code, [LOINC]),
  compare(a, b, s) {
    const code = sameConcept(a.code, b.code);
    if (!code) return null;
    const g = gap(effectiveOf(a), effectiveOf(b), s.reportHours * 3_600_000);
    if (!within(g)) return null;
    return { score: scored(code === 'code' ? 1 : 0.95, g), rule: `report:${code}+time` };
  },
};

const npiOf = (ids: Identifier[] | undefined): string[] =>
  (ids ?? []).filter((i) => canonicalSystem(i.system) === NPI && i.value).map((i) => `npi|${i.value!.trim()}`);

const practitioner: TypeRule<Practitioner> = {
  keys: (r) => npiOf(r.identifier),
  compare(a, b) {
    return overlaps(npiOf(a.identifier), npiOf(b.identifier)) ? { score: 1, rule: 'practitioner:npi' } : null;
  },
};

const orgName = (o: Organization) => {
  const n = normalText(o.name)
    .replace(/\./g, ' ')
    .replace(/\b(inc|llc|the|of|and)\b/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return n ? [`name|${n}`] : [];
};
const organization: TypeRule<Organization> = {
  keys: (r) => [...npiOf(r.identifier), ...orgName(r)],
  compare(a, b) {
    const [na, nb] = [npiOf(a.identifier), npiOf(b.identifier)];
    if (overlaps(na, nb)) return { score: 1, rule: 'organization:npi' };
    if (na.length && nb.length) return null; // two NPIs: two organizations, whatever their names
    return overlaps(orgName(a), orgName(b)) ? { score: 0.9, rule: 'organization:name' } : null;
  },
};

/** The person's own Patients at their sources: the same birth date and family name. */
const patient: TypeRule<Patient> = {
  keys: (r) => (r.birthDate ? [`born|${r.birthDate}`] : []),
  compare(a, b) {
    if (!a.birthDate || a.birthDate !== b.birthDate) return null;
    const family = (p: Patient) => (p.name ?? []).map((n) => normalText(n.family)).filter(Boolean);
    if (!overlaps(family(a), family(b))) return null;
    if (a.gender && b.gender && a.gender !== b.gender) return null;
    return { score: 1, rule: 'patient:birth+family' };
  },
};

export const RULES: Record<string, TypeRule> = {
  Condition: condition as TypeRule,
  AllergyIntolerance: allergy as TypeRule,
  Immunization: immunization as TypeRule,
  Observation: observation as TypeRule,
  MedicationRequest: medicationRule<MedicationRequest>((r) => r.authoredOn, 'medication-request') as TypeRule,
  MedicationStatement: medicationRule<MedicationStatement>(
    (r) => r.effectiveDateTime ?? r.effectivePeriod?.start ?? r.dateAsserted,
    'medication-statement',
  ) as TypeRule,
  Procedure: procedure as TypeRule,
  Encounter: encounter as TypeRule,
  DiagnosticReport: report as TypeRule,
  Practitioner: practitioner as TypeRule,
  Organization: organization as TypeRule,
  Patient: patient as TypeRule,
};
