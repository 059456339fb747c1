/**
 * What HAPI keeps out of the stored JSON: the id and the meta that rows hold (version, last
 * updated, source, tags, profiles, security labels). Splitting on write and rebuilding on read
 * live here, side by side, so the two stay inverse.
 */
import { createHash } from 'node:crypto';
import type { Coding, Meta, Resource } from '@medplum/fhirtypes';

export const TAG = 0;
export const PROFILE = 1;
export const SECURITY = 2;
/** HAPI's tag_system for profile rows. */
export const PROFILE_SYSTEM = 'https://github.com/hapifhir/hapi-fhir/ns/jpa/profile';

export interface TagInput {
  type: number;
  system: string | null;
  code: string | null;
  display: string | null;
  version: string | null;
  userSelected: boolean | null;
}

export interface SplitResource {
  /** The JSON stored in hfj_res_ver.res_text_vc. */
  text: string;
  source: string | null;
  tags: TagInput[];
  /** hex SHA-256 of the resource's content (stored JSON plus row-held meta), to skip no-op writes. */
  sha256: string;
}

function codingTag(type: number, c: Coding): TagInput {
  return {
    type,
    system: c.system ?? null,
    code: c.code ?? null,
    display: c.display ?? null,
    version: c.version ?? null,
    userSelected: c.userSelected ?? null,
  };
}

export function splitResource(resource: Resource): SplitResource {
  const { id: _id, meta, ...rest } = resource as Resource & { meta?: Meta };
  const tags: TagInput[] = [];
  let source: string | null = null;
  let stored: Record<string, unknown> = rest;
  if (meta) {
    const { versionId: _v, lastUpdated: _l, source: src, tag, profile, security, ...residual } = meta;
    source = src ?? null;
    for (const p of profile ?? []) tags.push({ type: PROFILE, system: PROFILE_SYSTEM, code: p, display: null, version: null, userSelected: null });
    for (const t of tag ?? []) tags.push(codingTag(TAG, t));
    for (const s of security ?? []) tags.push(codingTag(SECURITY, s));
    if (Object.keys(residual).length > 0) {
      // Keep key order: resourceType first, then meta, then the rest.
      const { resourceType, ...others } = rest;
      stored = { resourceType, meta: residual, ...others };
    }
  }
  const text = JSON.stringify(stored);
  const h = createHash('sha256');
  h.update(Buffer.from(text, 'utf16le'));
  if (source !== null || tags.length) h.update(Buffer.from(JSON.stringify([source, tags]), 'utf16le'));
  return { text, source, tags, sha256: h.digest('hex') };
}

export interface RowMeta {
  id: string;
  versionId: number;
  lastUpdated: Date;
  source: string | null;
  /** [type, system, code, display, version, userSelected] in insertion order. */
  tags: [number, string | null, string | null, string | null, string | null, boolean | null][] | null;
}

function metaObject(row: RowMeta, residual?: Record<string, unknown>): Meta {
  const meta: Meta = { ...(residual ?? {}), versionId: String(row.versionId), lastUpdated: row.lastUpdated.toISOString() };
  if (row.source) meta.source = row.source;
  if (row.tags) {
    for (const [type, system, code, display, version, userSelected] of row.tags) {
      if (type === PROFILE) {
        (meta.profile ??= []).push(code as string);
        continue;
      }
      const c: Coding = {};
      if (system !== null) c.system = system;
      if (version !== null) c.version = version;
      if (code !== null) c.code = code;
      if (display !== null) c.display = display;
      if (userSelected !== null) c.userSelected = userSelected;
      if (type === TAG) (meta.tag ??= []).push(c);
      else (meta.security ??= []).push(c);
    }
  }
  return meta;
}

/**
 * The resource as JSON text. Without residual meta in the stored text (the usual case) the
 * id and meta are spliced in as text, without parsing the resource.
 */
export function rebuildJson(text: string, row: RowMeta): string {
  const at = spliceIndex(text);
  if (at >= 0) return `${text.slice(0, at)}${idAndMeta(row)}${text.slice(at)}`;
  return JSON.stringify(rebuildResource(JSON.parse(text), row));
}

const HEAD = '{"resourceType":';
const HEAD_BYTES = Buffer.from(HEAD);

/**
 * Where a stored text (a string, or its UTF-8 bytes) takes the id and meta: after its resourceType
 * (its first comma, or its closing brace when it has nothing else), or -1 when it must be parsed:
 * residual meta kept in the stored text, or a text not written by splitResource.
 */
export function spliceIndex(text: string | Buffer): number {
  const head = typeof text === 'string' ? text.startsWith(HEAD) : text.subarray(0, HEAD_BYTES.length).equals(HEAD_BYTES);
  if (!head || text.includes('"meta":')) return -1;
  const comma = text.indexOf(',');
  if (comma > 0) return comma;
  const last = text.length - 1;
  return (typeof text === 'string' ? text[last] === '}' : text[last] === 0x7d) ? last : -1;
}

/** What rebuildJson splices in at spliceIndex: `,"id":...,"meta":{...}`. */
export function idAndMeta(row: RowMeta): string {
  return `,"id":${JSON.stringify(row.id)},"meta":${JSON.stringify(metaObject(row))}`;
}

export function rebuildResource(stored: Record<string, unknown>, row: RowMeta): Resource {
  const { resourceType, meta, ...rest } = stored;
  return { resourceType, id: row.id, meta: metaObject(row, meta as Record<string, unknown> | undefined), ...rest } as Resource;
}
