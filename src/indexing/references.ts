/**
 * Where a Reference or canonical points, in the shape of an hfj_res_link row.
 *
 * As HAPI's ResourceLinkExtractor: local references `Type/id` (optionally `/_history/v`) name a
 * resource that storage resolves to a res_id; absolute URLs are kept as target_resource_url
 * (with the type they name); `#contained` and `urn:` (uuid, oid) references, and references by
 * identifier only, make no link. A canonical makes a link only when it is absolute or `Type/id`.
 * Conditional references (`Patient?identifier=...`) are resolved before indexing, so they are skipped.
 * See: https://hl7.org/fhir/R4/references.html and https://hl7.org/fhir/R4/search.html#reference
 */
import type { TypedValue } from '@medplum/core';
import { allResourceTypes } from './definitions.ts';

export interface LinkTarget {
  targetType: string | null;
  targetId: string | null;
  targetUrl: string | null;
  targetVersion: string | null;
}

/** `Type/id` or `Type/id/_history/vid` at the end of a reference; ids per R4 `id` datatype. */
const LOCAL_RE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([A-Za-z0-9\-.]{1,64}))?$/;
const ABSOLUTE_TAIL_RE = /\/([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([A-Za-z0-9\-.]{1,64}))?$/;
const ABSOLUTE_RE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

/** The target of a reference string, or undefined when it makes no link. */
export function referenceTarget(reference: string, canonical = false): LinkTarget | undefined {
  const ref = reference.trim();
  if (!ref || ref.startsWith('#') || ref.startsWith('urn:')) return undefined;
  if (ABSOLUTE_RE.test(ref)) {
    // HAPI records the type an absolute URL names; the id stays in the URL (not a local resource).
    const m = canonical ? null : ABSOLUTE_TAIL_RE.exec(ref);
    const type = m && allResourceTypes().has(m[1]) ? m[1] : null;
    return { targetType: type, targetId: null, targetUrl: ref, targetVersion: m?.[3] ?? null };
  }
  const m = LOCAL_RE.exec(ref);
  if (!m || !allResourceTypes().has(m[1])) return undefined;
  return { targetType: m[1], targetId: m[2], targetUrl: null, targetVersion: m[3] ?? null };
}

/** The link a value of a reference parameter makes: a Reference or a canonical; others none. */
export function linkTarget(tv: TypedValue): LinkTarget | undefined {
  if (tv.type === 'Reference') {
    const ref = tv.value?.reference;
    return typeof ref === 'string' ? referenceTarget(ref) : undefined;
  }
  if (tv.type === 'canonical' && typeof tv.value === 'string') return referenceTarget(tv.value, true);
  return undefined;
}
