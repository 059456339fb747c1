/**
 * Resources of a visit, in the sandbox records generator (src/sandbox/generate.ts): the Encounter, vital signs,
 * laboratory results, Procedures and MedicationRequests.
 */
import type {
  CodeableConcept,
  Condition,
  DiagnosticReport,
  Encounter,
  MedicationRequest,
  Observation,
  ObservationReferenceRange,
  Practitioner,
  Procedure,
  Quantity,
} from '@medplum/fhirtypes';
import { isoDateTime, MINUTE, round, yearsBetween } from './random.ts';
import {
  concept,
  ENCOUNTER_CLASSES,
  ENCOUNTER_TYPES,
  LOINC,
  quantity,
  ref,
  RXNORM,
  SNOMED,
  TERMINOLOGY,
  US_CORE,
  type Code,
  type MedicationDef,
} from './catalogs.ts';
import { INTERPRETATIONS, LAB, PANELS, type LabDef, type LabKey, type PanelKey } from './lab.ts';
import { add, female, has, nextId, treated, type Chart, type Visit } from './chart.ts';

export function createEncounter(chart: Chart, visit: Visit, practitioner: Practitioner, reasons: Condition[]): Encounter {
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

export const CATEGORY = {
  vitals: concept(`${TERMINOLOGY}/observation-category`, { code: 'vital-signs', display: 'Vital Signs' }),
  laboratory: concept(`${TERMINOLOGY}/observation-category`, { code: 'laboratory', display: 'Laboratory' }),
  activity: concept(`${TERMINOLOGY}/observation-category`, { code: 'activity', display: 'Activity' }),
};

export function observation(chart: Chart, encounter: Encounter, category: CodeableConcept, code: CodeableConcept, at: number): Observation {
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

export interface Vitals {
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

export function measureVitals(chart: Chart, visit: Visit): Vitals {
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

export function recordVitals(chart: Chart, encounter: Encounter, at: number, v: Vitals): void {
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
      return {
        hemoglobin,
        hematocrit: hemoglobin * 3 + rng.real(-1, 1),
        wbc: rng.real(4.6, 10.2) + (infection ? 4 : 0),
        platelets: rng.real(165, 380),
      };
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

export function labPanel(chart: Chart, encounter: Encounter, visit: Visit, panel: PanelKey): DiagnosticReport {
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

export function hba1c(chart: Chart, encounter: Encounter, visit: Visit): void {
  const values = labValues(chart, 'hba1c', visit.start, false);
  labObservation(chart, encounter, 'hba1c', values.hba1c ?? 0, visit.start, visit.start + 6 * 60 * MINUTE);
}

export function procedure(chart: Chart, encounter: Encounter, code: Code, practitioner: Practitioner, start: number, end?: number): Procedure {
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

export function medicationRequest(
  chart: Chart,
  encounter: Encounter,
  med: MedicationDef,
  at: number,
  practitioner: Practitioner,
  reason: Condition,
  status: 'active' | 'completed',
): MedicationRequest {
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
export function orderMedications(chart: Chart, encounter: Encounter, visit: Visit, renew: boolean): void {
  for (const chronic of chart.chronic) {
    const med = chronic.def.medication;
    const known = chronic.condition?.recordedDate !== undefined && chronic.condition.recordedDate <= isoDateTime(visit.start);
    if (!med || !chronic.condition || !known || (chronic.order && !renew)) continue;
    if (chronic.order) chronic.order.status = 'completed';
    chronic.order = medicationRequest(chart, encounter, med, visit.end, chart.pcp, chronic.condition, 'active');
  }
}
