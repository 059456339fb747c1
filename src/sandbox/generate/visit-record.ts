/**
 * Resources of a visit, in the sandbox records generator (src/sandbox/generate.ts): its diagnoses, its clinical
 * note, and the whole visit recorded.
 */
import type { Condition, DocumentReference, Encounter, Patient, Practitioner } from '@medplum/fhirtypes';
import { ANCHOR, DAY, isoDate, isoDateTime, MINUTE } from './random.ts';
import {
  concept,
  LOINC,
  NOTE_TYPES,
  PENICILLIN_ALLERGY,
  PENICILLIN_V,
  PROCEDURES,
  ref,
  SNOMED,
  TERMINOLOGY,
  type AcuteDef,
  type Code,
} from './catalogs.ts';
import { PANELS, type PanelKey } from './lab.ts';
import { practitionerName } from './organization.ts';
import { add, ageAt, has, nextId, type Chart, type Chronic, type Visit } from './chart.ts';
import {
  createEncounter,
  hba1c,
  labPanel,
  measureVitals,
  medicationRequest,
  orderMedications,
  procedure,
  recordVitals,
  type Vitals,
} from './visit-resources.ts';

const COND_CATEGORY = `${TERMINOLOGY}/condition-category`;

export function conditionResource(
  chart: Chart,
  code: Code,
  text: string,
  category: Code,
  onset: number,
  recorded: number,
  encounter?: Encounter,
  abated?: number,
): Condition {
  return {
    resourceType: 'Condition',
    id: nextId(chart, 'cond'),
    clinicalStatus: concept(
      `${TERMINOLOGY}/condition-clinical`,
      abated ? { code: 'resolved', display: 'Resolved' } : { code: 'active', display: 'Active' },
    ),
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
    category: [
      concept('http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category', { code: 'clinical-note', display: 'Clinical Note' }),
    ],
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
    assessment: `Routine health maintenance, age ${age}. Active problems: ${listOrNone(
      problems.map((c) => c.def.text.toLowerCase()),
      'none',
    )}.`,
    plan: `Labs: ${panels.map((p) => PANELS[p].name).join(', ')}${sugars ? ', hemoglobin A1c' : ''}. Medications: ${listOrNone(medicationList(problems), 'none')}. Return in 12 months.`,
  };
}

function followup(chart: Chart, visit: Visit, encounter: Encounter): NoteParts {
  const problems = knownProblems(chart, visit.start);
  if (has(chart, 'diabetes', visit.start)) hba1c(chart, encounter, visit);
  const meds = medicationList(problems);
  if (meds.length) procedure(chart, encounter, PROCEDURES.reconciliation, chart.pcp, visit.start + 5 * MINUTE);
  orderMedications(chart, encounter, visit, false);
  const names = listOrNone(
    problems.map((c) => c.def.text.toLowerCase()),
    'new concerns',
  );
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

export function recordVisit(chart: Chart, visit: Visit): void {
  const practitioner = visitPractitioner(chart, visit);
  const encounter = createEncounter(chart, visit, practitioner, visitReasons(chart, visit));
  for (const c of chart.chronic) {
    if (c.condition?.recordedDate === isoDateTime(visit.start)) c.condition.encounter = ref(encounter);
  }
  let diagnosis: Condition | undefined;
  if (visit.acute) {
    const abated = visit.start + visit.acute.days * DAY;
    const category = { code: 'encounter-diagnosis', display: 'Encounter Diagnosis' };
    diagnosis = add(
      chart,
      conditionResource(
        chart,
        visit.acute,
        visit.acute.text,
        category,
        visit.start - 2 * DAY,
        visit.start,
        encounter,
        abated < ANCHOR ? abated : undefined,
      ),
    );
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
