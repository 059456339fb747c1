// Validation throughput on one core over every resource of the Synthea bundles in ../shared/synthea
// (or the folder given as the first argument): the JSON schema (ajv) alone, the base StructureDefinitions
// by @medplum/core's validateResource and by the compiled rules that replace it, the definitions layer,
// and all of it as the server runs it. Usage: npx node bench/validation.ts [folder]
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateResource } from '@medplum/core';
import type { Resource, StructureDefinition } from '@medplum/fhirtypes';
import { createValidator } from '../src/fhir/validation/index.ts';
import { compiledBaseIssues, compiledRulesFallbacks } from '../src/fhir/validation/compiled-rules.ts';
import { createSchemaLayer } from '../src/fhir/validation/json-schema.ts';
import { validateWithDefinitions } from '../src/fhir/validation/definitions-layer.ts';
import { loadProfiles } from '../src/fhir/validation/profiles.ts';

const root = join(import.meta.dirname, '..');
const folder = process.argv[2] ?? join(root, '../shared/synthea');

const resources: Resource[] = [];
for (const file of readdirSync(folder).filter((f) => f.endsWith('.json'))) {
  const bundle = JSON.parse(readFileSync(join(folder, file), 'utf8')) as { entry?: { resource: Resource }[] };
  for (const entry of bundle.entry ?? []) resources.push(entry.resource);
}

let started = performance.now();
const validator = await createValidator({ profilesDir: join(root, 'profiles') });
console.log(`start-up (definitions indexed, profiles loaded): ${(performance.now() - started).toFixed(0)} ms`);
const schema = createSchemaLayer();
const profiles = await loadProfiles(join(root, 'profiles'));

// First pass: compiles each type's validators; counted apart, as a process pays it once.
started = performance.now();
let invalid = 0;
for (const r of resources) if (validator.validate(r).length > 0) invalid++;
console.log(`first pass with compilation: ${(performance.now() - started).toFixed(0)} ms; ${invalid} of ${resources.length} resources invalid`);

/** @medplum/core throws its issues when one is an error; only the time counts here. */
const medplumBase = (r: Resource): void => {
  try {
    validateResource(r);
  } catch {
    // Only the time counts here.
  }
};

const runs: [string, (r: Resource) => unknown][] = [
  ['ajv (JSON schema) alone', (r) => schema.validate(r)],
  ['base definitions by @medplum/core validateResource', medplumBase],
  ['base definitions by the compiled rules', (r) => compiledBaseIssues(r)],
  ['definitions layer (compiled rules, profiles by @medplum/core)', (r) => validateWithDefinitions(r, profiles)],
  ['both (validator.validate)', (r) => validator.validate(r)],
];
const ROUNDS = 3;
for (const [name, run] of runs) {
  let best = Infinity;
  for (let round = 0; round < ROUNDS; round++) {
    const t0 = performance.now();
    for (const r of resources) run(r);
    best = Math.min(best, performance.now() - t0);
  }
  const perSecond = (resources.length / best) * 1000;
  console.log(
    `${name}: ${Math.round(perSecond).toLocaleString('en')} resources/s, ${((best * 1000) / resources.length).toFixed(1)} µs a resource (best of ${ROUNDS} over ${resources.length})`,
  );
}

console.log(`compiled rules: resources that fell back to @medplum/core, by type: ${JSON.stringify(compiledRulesFallbacks())}`);

// A resource that claims a profile: the profile parsed once (as the validator does) against @medplum/core's
// validateResource(resource, { profile }), which parses the StructureDefinition on every call.
const usCore = JSON.parse(readFileSync(join(root, 'profiles/structure-definitions/us-core-5.0.1.json'), 'utf8')) as StructureDefinition[];
const usCorePatient = usCore.find((sd) => sd.id === 'us-core-patient') as StructureDefinition;
const patients = resources
  .filter((r) => r.resourceType === 'Patient')
  .map((r) => ({ ...r, meta: { ...r.meta, profile: [usCorePatient.url as string] } }) as Resource);
const timeEach = (run: (r: Resource) => unknown): number => {
  const t0 = performance.now();
  for (let round = 0; round < 5; round++) for (const r of patients) run(r);
  return ((performance.now() - t0) * 1000) / (patients.length * 5);
};
const quiet = (r: Resource): void => {
  try {
    validateResource(r, { profile: usCorePatient });
  } catch {
    // Only the time counts here.
  }
};
timeEach((r) => validator.validate(r));
console.log(
  `Synthea Patients claiming us-core-patient: validator.validate ${timeEach((r) => validator.validate(r)).toFixed(0)} µs each; ` +
    `validateResource(r, { profile }) alone ${timeEach(quiet).toFixed(0)} µs each`,
);
