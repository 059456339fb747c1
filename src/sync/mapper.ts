/**
 * A source resource as it is stored in the user's records: a local id derived from (user, system,
 * type, source id), so a re-import updates and never duplicates; references rewritten to those
 * local ids when their target is in the user's records (or comes in this sync), and otherwise
 * made absolute at the source; `meta.source` = the source's FHIR base, and a tag naming the health
 * system. The source's own versionId and lastUpdated give way to ours. A note's attachment whose
 * content is stored (src/sync/attachments.ts) points at the local Binary.
 */
import { createHash } from 'node:crypto';
import type { Resource } from '@medplum/fhirtypes';
import { isResourceType } from '../fhir/resource-type.ts';

/** The code system of the tag that names where a record came from: the code is the system's directory id. */
export const SOURCE_TAG_SYSTEM = 'https://tributary.dev/fhir/CodeSystem/health-system';

export interface Origin {
  userId: string;
  systemId: string;
  systemName: string;
  /** The source's FHIR base, without a trailing slash. */
  base: string;
}

/** 32 hex characters of SHA-256 over (user, system, type, source id): stable, and distinct per user. */
export function localId(o: Origin, type: string, sourceId: string): string {
  return createHash('sha256').update(`${o.userId}\n${o.systemId}\n${type}\n${sourceId}`).digest('hex').slice(0, 32);
}

/** `Type/id` of a reference at the source (relative, or absolute under its base); undefined otherwise. */
export function sourceTarget(o: Origin, reference: string): { type: string; id: string } | undefined {
  const rel = reference.startsWith(`${o.base}/`) ? reference.slice(o.base.length + 1) : reference;
  const m = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(rel);
  return m && isResourceType(m[1]) ? { type: m[1], id: m[2] } : undefined;
}

/** Every `reference` string of a resource (contained resources' too), for `visit` to see or replace (a string it returns unchanged is left alone). */
function walkReferences(node: unknown, visit: (ref: string) => string): void {
  if (Array.isArray(node)) {
    for (const item of node) walkReferences(item, visit);
  } else if (node && typeof node === 'object') {
    const obj = node as Record<string, unknown>;
    for (const [k, v] of Object.entries(obj)) {
      if (k === 'reference' && typeof v === 'string') {
        const to = visit(v);
        if (to !== v) obj[k] = to;
      } else if (typeof v === 'object') walkReferences(v, visit);
    }
  }
}

/** The targets a resource refers to at the source. */
export function referencedTargets(o: Origin, r: Resource): { type: string; id: string }[] {
  const out: { type: string; id: string }[] = [];
  walkReferences(r, (ref) => {
    const t = sourceTarget(o, ref);
    if (t) out.push(t);
    return ref;
  });
  return out;
}

/**
 * The resource as stored: local id, references rewritten (`resolves` says whether a target is in
 * the user's records), meta.source and the source tag; `attachments` (the url as written at the
 * source → the local `Binary/<id>`) rewrites DocumentReference.content[].attachment.url and
 * DiagnosticReport.presentedForm[].url. The input is not changed.
 */
export function toLocal(
  o: Origin,
  r: Resource,
  resolves: (type: string, id: string) => boolean,
  attachments?: ReadonlyMap<string, string>,
): Resource {
  const out = structuredClone(r) as Resource & { id: string };
  if (attachments?.size) {
    const forms =
      out.resourceType === 'DocumentReference'
        ? (out.content ?? []).map((c) => c.attachment)
        : out.resourceType === 'DiagnosticReport'
          ? (out.presentedForm ?? [])
          : [];
    for (const a of forms) {
      const local = a && typeof a.url === 'string' ? attachments.get(a.url) : undefined;
      if (local) a.url = local;
    }
  }
  out.id = localId(o, r.resourceType, r.id!);
  walkReferences(out, (ref) => {
    if (ref.startsWith('#')) return ref;
    const t = sourceTarget(o, ref);
    if (!t) return ref;
    return resolves(t.type, t.id) ? `${t.type}/${localId(o, t.type, t.id)}` : `${o.base}/${t.type}/${t.id}`;
  });
  const { versionId: _v, lastUpdated: _l, source: _s, tag, ...meta } = out.meta ?? {};
  out.meta = {
    ...meta,
    source: o.base,
    tag: [...(tag ?? []).filter((t) => t.system !== SOURCE_TAG_SYSTEM), { system: SOURCE_TAG_SYSTEM, code: o.systemId, display: o.systemName }],
  };
  return out;
}
