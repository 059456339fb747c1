/**
 * A choice element (`value[x]`) holds one value, of one of its types: `valueQuantity` and `valueString` side
 * by side break its cardinality (0..1). The JSON schema cannot say so, and @medplum/core only warns about it
 * (`Conflicting choice of type properties: "valueString", "valueQuantity"`), naming the keys but not where
 * they are. This turns that warning into an error at each object that holds both keys.
 *
 * See: https://hl7.org/fhir/R4/formats.html#choice
 */
import type { OperationOutcomeIssue } from '@medplum/fhirtypes';
import { fhirPathMember } from './fhirpath-location.ts';

const CONFLICT = /^Conflicting choice of type properties: "([^"]+)", "([^"]+)"$/;

/** The keys of a conflict warning, or undefined if the issue is not one. */
export function conflictingChoiceKeys(issue: OperationOutcomeIssue): [string, string] | undefined {
  const m = CONFLICT.exec(issue.details?.text ?? '');
  return m ? [m[1], m[2]] : undefined;
}

/** Collects the FHIRPath locations of the objects under `node` (itself at `path`) that hold both keys. */
function locate(node: unknown, path: string, keys: [string, string], found: string[]): void {
  if (Array.isArray(node)) {
    node.forEach((item, i) => locate(item, `${path}[${i}]`, keys, found));
  } else if (node && typeof node === 'object') {
    const object = node as Record<string, unknown>;
    if (keys[0] in object && keys[1] in object) found.push(path);
    for (const [key, value] of Object.entries(object)) {
      if (value && typeof value === 'object') locate(value, path + fhirPathMember(key), keys, found);
    }
  }
}

/** One error per object of `resource` that holds both keys of the conflict. */
export function choiceConflictIssues(resource: { resourceType: string }, keys: [string, string]): OperationOutcomeIssue[] {
  const found: string[] = [];
  locate(resource, resource.resourceType, keys, found);
  return found.map((at) => ({
    severity: 'error',
    code: 'structure',
    diagnostics: `Only one of "${keys[1]}" and "${keys[0]}" may be present: they are two types of one choice element`,
    expression: [at + fhirPathMember(keys[0])],
  }));
}
