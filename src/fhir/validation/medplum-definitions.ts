/**
 * The base StructureDefinitions of FHIR R4 (data types and resources), indexed into @medplum/core once per
 * process. @medplum/core keeps them in module-level maps, so every module of the process shares them: this
 * indexes only when nobody has yet (the search-parameter registry uses the same index), which keeps a second
 * caller from paying the ~1.3 s again. See src/fhir/r4-definitions.ts.
 *
 * See: https://hl7.org/fhir/R4/structuredefinition.html
 */
import { indexR4Definitions } from '../r4-definitions.ts';

/** Indexes profiles-types.json and profiles-resources.json unless they are indexed already. Synchronous. */
export function ensureBaseDefinitionsIndexed(): void {
  indexR4Definitions();
}
