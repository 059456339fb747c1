/**
 * _summary and _elements on read and search results.
 * See: https://hl7.org/fhir/R4/search.html#summary and #elements
 */
import { tryGetProfile } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import { badRequest } from './errors.ts';
import { indexR4Definitions } from './r4-definitions.ts';

const summaryElements = new Map<string, string[]>();

/**
 * Top-level element names marked isSummary in each resource's StructureDefinition ("value[x]" kept as a stem),
 * from the R4 definitions @medplum/core has indexed (src/fhir/r4-definitions.ts): its parsed schema keeps the
 * isSummary top-level names, with the `[x]` of a choice element dropped, which is put back here.
 */
function summaryNames(type: string): string[] {
  let names = summaryElements.get(type);
  if (!names) {
    indexR4Definitions();
    const schema = tryGetProfile(`http://hl7.org/fhir/StructureDefinition/${type}`);
    names = [];
    if (schema?.kind === 'resource') {
      for (const name of schema.summaryProperties ?? []) names.push(schema.elements[`${name}[x]`] ? `${name}[x]` : name);
    }
    // Only the R4 resource types are remembered: the type comes from stored data, keep the memo bounded.
    if (names.length) summaryElements.set(type, names);
  }
  return names;
}

function keep(name: string, allowed: string[]): boolean {
  for (const a of allowed) {
    if (a === name) return true;
    if (a.endsWith('[x]') && name.startsWith(a.slice(0, -3)) && /^[A-Z]/.test(name.slice(a.length - 3))) return true;
  }
  return false;
}

const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' };

function subset(resource: Resource, allowed: string[]): Resource {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(resource)) {
    if (k === 'resourceType' || k === 'id' || k === 'meta' || keep(k, allowed)) out[k] = v;
  }
  const meta = { ...((out.meta as object) ?? {}) } as { tag?: unknown[] };
  meta.tag = [...(meta.tag ?? []), SUBSETTED];
  out.meta = meta;
  return out as unknown as Resource;
}

export type SummaryMode = 'true' | 'false' | 'text' | 'data' | 'count';

export function parseSummary(value: string | undefined): SummaryMode | undefined {
  if (value === undefined) return undefined;
  if (!['true', 'false', 'text', 'data', 'count'].includes(value)) {
    throw badRequest(`_summary must be one of true, false, text, data, count; it is "${value}".`);
  }
  return value as SummaryMode;
}

export function parseElements(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => s.replace(/^[A-Z][A-Za-z]+\./, ''));
  for (const n of names) if (!/^[a-z][A-Za-z0-9]*(\[x\])?$/.test(n)) throw badRequest(`_elements names top-level elements; "${n}" is not one.`);
  return names;
}

/** Applies _summary / _elements to one resource; returns it unchanged when neither applies. */
export function applySummary(resource: Resource, summary: SummaryMode | undefined, elements: string[] | undefined): Resource {
  if (summary === 'true') return subset(resource, summaryNames(resource.resourceType));
  if (summary === 'text') return subset(resource, ['text']);
  if (summary === 'data') {
    const { text: _t, ...rest } = resource as Resource & { text?: unknown };
    return subset(rest as Resource, Object.keys(rest));
  }
  if (elements) return subset(resource, elements);
  return resource;
}
