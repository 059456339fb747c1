/**
 * Search-parameter indexing speed on the Synthea bundles, one core.
 *
 *   npx node bench/indexing.ts [passes]
 *
 * Prints resources/s for: @medplum/core's FHIRPath over every parameter expression (parsed once),
 * the compiled evaluators alone, and extractIndexes (rows and hashes, hash memo warm). Then the
 * cost of hapiHash over the hashes those rows carry, i.e. what extraction pays when no hash is
 * remembered (first sight of every value). `urn:uuid:` references are rewritten to `Type/id`
 * first, as ingest does, so links are indexed.
 */
import { evalFhirPathTyped, parseFhirPath, toTypedValue, type FhirPathAtom } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import { extractIndexes } from '../src/indexing/extract.ts';
import { createR4Registry, evaluateParam } from '../src/indexing/registry.ts';
import type { ResourceIndexes } from '../src/indexing/types.ts';
import { hapiHash } from '../src/storage/hash.ts';
import { syntheaResourcesWithLocalReferences } from '../test/unit/indexing/corpus.ts';

const passes = Number(process.argv[2] ?? 5);

let start = performance.now();
const registry = createR4Registry();
console.log(`definitions + registry: ${(performance.now() - start).toFixed(0)} ms`);
const resources = syntheaResourcesWithLocalReferences();
const n = resources.length;
console.log(`${n} Synthea resources, ${passes} timed passes after 2 warm-up passes`);

function rate(label: string, fn: (r: Resource) => void): number {
  for (let w = 0; w < 2; w++) for (const r of resources) fn(r);
  start = performance.now();
  for (let p = 0; p < passes; p++) for (const r of resources) fn(r);
  const ms = performance.now() - start;
  const perSecond = (n * passes * 1000) / ms;
  console.log(`${label.padEnd(44)} ${perSecond.toFixed(0).padStart(7)} resources/s  ${((ms * 1000) / (n * passes)).toFixed(1)} µs/resource`);
  return perSecond;
}

const asts = new Map<string, FhirPathAtom>();
const ast = (e: string): FhirPathAtom => asts.get(e) ?? asts.set(e, parseFhirPath(e)).get(e)!;
let expressions = 0;
for (const r of resources) for (const p of registry.forType(r.resourceType)) if (p.type !== 'composite') expressions++;
console.log(`${(expressions / n).toFixed(1)} non-composite parameters per resource`);

rate('@medplum/core FHIRPath, every parameter', (r) => {
  for (const p of registry.forType(r.resourceType)) {
    if (p.type !== 'composite') evalFhirPathTyped(ast(p.expression), [toTypedValue(r)]);
  }
});
rate('compiled evaluators, every parameter', (r) => {
  const root = toTypedValue(r);
  for (const p of registry.forType(r.resourceType)) if (p.type !== 'composite') evaluateParam(p, root);
});
const extract = rate('extractIndexes (hash memo warm)', (r) => extractIndexes(r, registry));

// The hashes the rows carry beyond hash_identity, which is always remembered per parameter.
const inputs: (string | null)[][] = [];
let rows = 0;
for (const r of resources) {
  const x: ResourceIndexes = extractIndexes(r, registry);
  const t = r.resourceType;
  rows += x.strings.length + x.tokens.length + x.dates.length + x.numbers.length + x.quantities.length + x.uris.length;
  rows += x.coords.length + x.links.length + x.present.length;
  for (const s of x.strings) if (!s.missing) inputs.push([t, s.name, s.valueExact], [t, s.name, s.valueNormalized!.slice(0, 1)]);
  for (const k of x.tokens) {
    if (!k.missing) inputs.push([t, k.name, k.system], [t, k.name, k.system ?? '', k.value], [t, k.name, k.value]);
  }
  for (const q of x.quantities) if (!q.missing) inputs.push([t, q.name, q.units], [t, q.name, q.system, q.units]);
  for (const u of x.uris) if (!u.missing) inputs.push([t, u.name, u.uri]);
  for (const p of x.present) inputs.push([t, p.name, p.present ? 'true' : 'false']);
}
console.log(`${(rows / n).toFixed(1)} rows and ${(inputs.length / n).toFixed(1)} value hashes per resource`);
for (const i of inputs) hapiHash(i);
start = performance.now();
for (let p = 0; p < passes; p++) for (const i of inputs) hapiHash(i);
const hashUsPerResource = ((performance.now() - start) * 1000) / (n * passes);
const perHash = (hashUsPerResource * n) / inputs.length;
console.log(`hapiHash: ${perHash.toFixed(2)} µs per hash, ${hashUsPerResource.toFixed(1)} µs per resource`);
const cold = 1e6 / (1e6 / extract + hashUsPerResource);
console.log(`extractIndexes with every hash computed (memo cold): ~${cold.toFixed(0)} resources/s`);
