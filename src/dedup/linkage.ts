/**
 * De-duplication's links as FHIR R4 `Linkage` resources: the record kept in the de-duplicated
 * view as `source`, its duplicate as `alternate`; `active` false once rejected; the rule, score,
 * decision and when, in extensions of this project's.
 * See: https://hl7.org/fhir/R4/linkage.html
 */
import type { Extension, Linkage } from '@medplum/fhirtypes';
import type { LinkRow } from './sql.ts';

export const DEDUP_EXTENSION = 'https://tributary.dev/fhir/StructureDefinition/dedup-link';

/** A Linkage's id: its two records' res_ids, the smaller first. */
export const linkageId = (r: Pick<LinkRow, 'a_res_id' | 'b_res_id'>): string => `${r.a_res_id}-${r.b_res_id}`;

export function parseLinkageId(id: string): [string, string] | null {
  const m = /^(\d{1,19})-(\d{1,19})$/.exec(id);
  return m && BigInt(m[1]) < BigInt(m[2]) ? [m[1], m[2]] : null;
}

export function toLinkage(r: LinkRow): Linkage {
  const part: Extension[] = [
    { url: 'rule', valueString: r.rule },
    { url: 'score', valueDecimal: Math.round(r.score * 1000) / 1000 },
    { url: 'status', valueCode: r.status },
    { url: 'made', valueDateTime: r.made_at.toISOString() },
    ...(r.decided_at ? [{ url: 'decided', valueDateTime: r.decided_at.toISOString() }] : []),
  ];
  return {
    resourceType: 'Linkage',
    id: linkageId(r),
    active: r.status !== 'rejected',
    extension: [{ url: DEDUP_EXTENSION, extension: part }],
    item: [
      { type: 'source', resource: { reference: `${r.res_type}/${r.a_id}`, ...(r.a_source ? { display: r.a_source } : {}) } },
      { type: 'alternate', resource: { reference: `${r.res_type}/${r.b_id}`, ...(r.b_source ? { display: r.b_source } : {}) } },
    ],
  };
}
