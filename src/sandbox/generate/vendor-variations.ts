/**
 * Vendor variations (see VendorVariations), applied to a finished record by the sandbox records generator
 * (src/sandbox/generate.ts).
 */
import type { Binary, DocumentReference, Encounter, Procedure } from '@medplum/fhirtypes';
import { noteHtml, notePdf } from '../notes.ts';
import type { VendorVariations } from './options.ts';
import { createRng, type Rng } from './random.ts';
import { concept, ENCOUNTER_TYPES, LOINC, PROCEDURES, ref, SNOMED, TERMINOLOGY, type Code } from './catalogs.ts';
import { add, nextId, type Chart } from './chart.ts';
import { observation } from './visit-resources.ts';

const VENDOR_CATEGORY = {
  socialHistory: concept(`${TERMINOLOGY}/observation-category`, { code: 'social-history', display: 'Social History' }),
  survey: concept(`${TERMINOLOGY}/observation-category`, { code: 'survey', display: 'Survey' }),
};
const SMOKING_STATUS: readonly Code[] = [
  { code: '266919005', display: 'Never smoked tobacco (finding)' },
  { code: '8517006', display: 'Ex-smoker (finding)' },
  { code: '77176002', display: 'Smoker (finding)' },
];
const MASKED = concept(`${TERMINOLOGY}/data-absent-reason`, { code: 'masked', display: 'Masked' });

export function applyVariations(chart: Chart, personKey: string, v: VendorVariations): void {
  const rng = createRng(`${chart.sys.seed}:vendor:${personKey}`);
  if (v.moreCategories) moreCategories(chart, rng);
  if (v.noteBinaries?.length) noteBinaries(chart, v.noteBinaries);
  if (v.enteredInError) enterInError(chart, rng, v.enteredInError, v.maskEnteredInError ?? false);
  if (v.procedureWithoutStatus && chart.index === 1) {
    const first = chart.resources.find((r): r is Procedure => r.resourceType === 'Procedure');
    if (first) delete (first as { status?: string }).status;
  }
}

/** Smoking status at each check-up (one status a patient), a PHQ-2 score with each depression screening. */
function moreCategories(chart: Chart, rng: Rng): void {
  const roll = rng.next();
  const smoking = SMOKING_STATUS[roll < 0.6 ? 0 : roll < 0.85 ? 1 : 2];
  for (const r of [...chart.resources]) {
    if (r.resourceType === 'Encounter' && r.type?.[0].coding?.[0].code === ENCOUNTER_TYPES.checkup.code && r.period?.start) {
      const code = concept(LOINC, { code: '72166-2', display: 'Tobacco smoking status' });
      add(chart, {
        ...observation(chart, r, VENDOR_CATEGORY.socialHistory, code, Date.parse(r.period.start)),
        valueCodeableConcept: concept(SNOMED, smoking),
      });
    }
    if (r.resourceType === 'Procedure' && r.code?.coding?.[0].code === PROCEDURES.depressionScreening.code && r.performedDateTime && r.encounter) {
      const encounter = chart.resources.find((e): e is Encounter => `Encounter/${e.id}` === r.encounter?.reference);
      if (!encounter) continue;
      const code = concept(LOINC, { code: '55758-7', display: 'Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]' });
      const score = rng.chance(0.8) ? rng.int(0, 2) : rng.int(3, 6);
      add(chart, { ...observation(chart, encounter, VENDOR_CATEGORY.survey, code, Date.parse(r.performedDateTime)), valueInteger: score });
    }
  }
}

/** Each note's inline text becomes Binary renditions, linked by relative urls. */
function noteBinaries(chart: Chart, formats: readonly ('text/html' | 'application/pdf')[]): void {
  for (const doc of chart.resources.filter((r): r is DocumentReference => r.resourceType === 'DocumentReference')) {
    const inline = doc.content[0].attachment;
    const text = Buffer.from(inline.data ?? '', 'base64').toString('utf8');
    doc.content = formats.map((contentType) => {
      const bytes = contentType === 'text/html' ? Buffer.from(noteHtml(text), 'utf8') : notePdf(text);
      const binary = add<Binary>(chart, {
        resourceType: 'Binary',
        id: nextId(chart, 'bin'),
        contentType,
        securityContext: ref(chart.patient),
        data: bytes.toString('base64'),
      });
      return { attachment: { contentType, url: `Binary/${binary.id}`, size: bytes.length, title: inline.title, creation: inline.creation } };
    });
  }
}

/** Marks a share of each type's resources entered-in-error; masked, an Observation loses its values. */
function enterInError(chart: Chart, rng: Rng, shares: NonNullable<VendorVariations['enteredInError']>, mask: boolean): void {
  const withoutValue = (o: Record<string, unknown>): void => {
    for (const k of Object.keys(o)) if (k.startsWith('value')) delete o[k];
    o.dataAbsentReason = MASKED;
  };
  for (const r of chart.resources) {
    const share = shares[r.resourceType as keyof typeof shares];
    if (share === undefined || !rng.chance(share)) continue;
    (r as { status: string }).status = 'entered-in-error';
    if (r.resourceType !== 'Observation' || !mask) continue;
    delete r.interpretation;
    if (r.component) for (const c of r.component) withoutValue(c as unknown as Record<string, unknown>);
    else withoutValue(r as unknown as Record<string, unknown>);
  }
}
