/**
 * Planning visits, in the sandbox records generator (src/sandbox/generate.ts): which visits a year of a
 * patient's history has, and when.
 */
import { ANCHOR, DAY, MINUTE, weekday, YEAR, type Rng } from './random.ts';
import { acuteIn, type AcuteDef, type VisitKind } from './catalogs.ts';
import { ageAt, type Chart, type Visit } from './chart.ts';

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
export function planVisits(chart: Chart): Visit[] {
  const years: [number, number][] = [];
  for (let to = ANCHOR; to > chart.historyStart; to -= YEAR) years.unshift([Math.max(chart.historyStart, to - YEAR), to]);
  const visits: Visit[] = [];
  const lastColonoscopy = { at: Number.NEGATIVE_INFINITY };
  for (const [from, to] of years) visits.push(...planYear(chart, from, to, lastColonoscopy));
  // Inpatient stays end before the anchor, so that every period is in the past.
  return visits.filter((v) => v.end < ANCHOR).sort((a, b) => a.start - b.start);
}
