/**
 * Test corpora for indexing: the official R4 examples (hl7.fhir.r4.examples) and the Synthea
 * bundles in /work/shared/synthea. Bundles count as themselves and as each entry's resource.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Bundle, Resource } from '@medplum/fhirtypes';

export const SYNTHEA_DIR = '/work/shared/synthea';

function examplesDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('hl7.fhir.r4.examples/package.json'));
}

function withEntries(resource: Resource, out: Resource[]): void {
  out.push(resource);
  if (resource.resourceType === 'Bundle') {
    for (const entry of resource.entry ?? []) if (entry.resource) withEntries(entry.resource, out);
  }
}

function readResources(dir: string, keepBundles: boolean): Resource[] {
  const out: Resource[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith('.json') || file === 'package.json' || file.startsWith('.')) continue;
    const json = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    if (typeof json?.resourceType !== 'string') continue;
    if (keepBundles) withEntries(json, out);
    else for (const entry of (json as Bundle).entry ?? []) if (entry.resource) out.push(entry.resource);
  }
  return out;
}

/**
 * Every R4 example resource, bundle entries included, each distinct resource once: many files
 * (StructureDefinition-*.json, ValueSet-*.json, ...) are also entries of the definition bundles.
 */
export function exampleResources(): Resource[] {
  const seen = new Set<string>();
  return readResources(examplesDir(), true).filter((r) => {
    const digest = createHash('sha1').update(JSON.stringify(r)).digest('base64');
    if (seen.has(digest)) return false;
    seen.add(digest);
    return true;
  });
}

/** Every resource of every Synthea bundle (the bundles themselves left out). */
export function syntheaResources(): Resource[] {
  return readResources(SYNTHEA_DIR, false);
}

/**
 * Synthea bundles refer to each other's entries by `urn:uuid:` fullUrls, which ingest rewrites to
 * `Type/id` before indexing. Do the same, so that links are indexed as in real use.
 */
export function syntheaResourcesWithLocalReferences(): Resource[] {
  const out: Resource[] = [];
  for (const file of readdirSync(SYNTHEA_DIR).sort()) {
    if (!file.endsWith('.json')) continue;
    const text = readFileSync(join(SYNTHEA_DIR, file), 'utf8');
    const bundle = JSON.parse(text) as Bundle;
    const local = new Map<string, string>();
    for (const e of bundle.entry ?? []) {
      if (e.fullUrl && e.resource) local.set(e.fullUrl, `${e.resource.resourceType}/${e.resource.id ?? e.fullUrl.slice(9)}`);
    }
    const rewritten = JSON.parse(text, (_key, value) =>
      typeof value === 'string' && value.startsWith('urn:uuid:') ? (local.get(value) ?? value) : value,
    ) as Bundle;
    for (const e of rewritten.entry ?? []) if (e.resource) out.push(e.resource);
  }
  return out;
}
