/**
 * Resources outside visits, of the sandbox records generator (src/sandbox/generate.ts): the problem list,
 * allergies, immunizations and the daily step counts.
 */
import { STEPS_LOINC } from './options.ts';
import { ANCHOR, ANCHOR_YEAR, DAY, isoDate, isoDateTime, MINUTE, weekday, YEAR, type Rng } from './random.ts';
import { concept, CVX, LOINC, quantity, ref, SNOMED, TERMINOLOGY, VACCINES, type Code } from './catalogs.ts';
import { add, nextId, type Chart, type Visit } from './chart.ts';
import { CATEGORY } from './visit-resources.ts';
import { conditionResource } from './visit-record.ts';

/**
 * The problem list. A problem is recorded at the first visit on or after its onset (the visit then
 * gets its encounter); one older than the history was recorded at its onset.
 */
export function recordProblems(chart: Chart, visits: Visit[]): void {
  const category = { code: 'problem-list-item', display: 'Problem List Item' };
  for (const chronic of chart.chronic) {
    const visit = visits.find((v) => v.start >= chronic.onset && v.kind !== 'colonoscopy');
    const recorded = chronic.onset < chart.historyStart || !visit ? chronic.onset : visit.start;
    chronic.condition = add(chart, conditionResource(chart, chronic.def, chronic.def.text, category, chronic.onset, recorded));
  }
}

export function recordAllergies(chart: Chart): void {
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

export function immunization(chart: Chart, vaccine: Code, at: number): void {
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
export function recordImmunizations(chart: Chart, skipFluSeason?: number): void {
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
export function recordSteps(chart: Chart): void {
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
