/**
 * The FHIR R4 type model, loaded once per process.
 *
 * @medplum/core answers "what type is Patient.deceased[x] here?" from StructureDefinitions that
 * must be indexed first (profiles-types.json, profiles-resources.json: ~1.2-1.6 s). Both the
 * compiled evaluators and the FHIRPath fallback read that global index, so it is built before
 * anything evaluates an expression, once per process for every user of @medplum/core (the validator
 * too): see src/fhir/r4-definitions.ts.
 */
import { getResourceTypes } from '@medplum/core';
import { indexR4Definitions } from '../fhir/r4-definitions.ts';

let loaded = false;
let resourceTypes: ReadonlySet<string> = new Set();

/** Index the R4 base StructureDefinitions into @medplum/core's global schema, unless done. */
export function loadFhirDefinitions(): void {
  if (loaded) return;
  indexR4Definitions();
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
