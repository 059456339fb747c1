/**
 * The rules of the StructureDefinitions that the JSON schema cannot express: cardinality (min/max),
 * fixed and pattern values, slicing, invariants (FHIRPath constraints), primitive formats; checked with
 * @medplum/core's validator against the base definition and against each known profile in `meta.profile`.
 *
 * See: https://hl7.org/fhir/R4/validation.html and https://hl7.org/fhir/R4/profiling.html
 *
 * @medplum/core does not check terminology bindings; the required bindings to `code` elements are enums in
 * the JSON schema and are checked there.
 *
 * The base definition's rules are checked by compiled-rules.ts, which finds what @medplum/core's
 * `validateResource(resource)` finds several times faster (test/unit/fhir/compiled-rules.test.ts proves the
 * two alike); the profiles are still checked by @medplum/core.
 */
import { OperationOutcomeError, validateTypedValue } from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { choiceConflictIssues, conflictingChoiceKeys } from './choice-conflicts.ts';
import { compiledBaseIssues } from './compiled-rules.ts';
import { isFalsePositive } from './definitions-corrections.ts';
import { resolveChoiceSteps } from './fhirpath-location.ts';
import type { LoadedProfile, ProfileSet } from './profiles.ts';

/** What a run found: the errors, and the exception if @medplum/core failed on the resource itself. */
export interface DefinitionsResult {
  issues: OperationOutcomeIssue[];
  /** An error thrown by @medplum/core other than its outcome of errors (a bug or an unexpected shape). */
  failure?: Error;
}

/**
 * Runs one validation; @medplum/core returns its warnings, and throws all its issues if one is an error
 * (compiledBaseIssues returns them all).
 */
function run(check: () => OperationOutcomeIssue[]): { issues: OperationOutcomeIssue[]; failure?: Error } {
  try {
    return { issues: check() };
  } catch (err) {
    if (err instanceof OperationOutcomeError) return { issues: err.outcome.issue ?? [] };
    return { issues: [], failure: err instanceof Error ? err : new Error(String(err)) };
  }
}

/** Medplum reports a missing mandatory element as `structure`; it is `required` in the issue-type codes. */
function codeOf(issue: OperationOutcomeIssue): OperationOutcomeIssue['code'] {
  const text = issue.details?.text ?? '';
  if (text === 'Missing required property') return 'required';
  if (/^Invalid (\w+ format|numeric value)$|^Expected number|^String must|^Value did not match/.test(text)) {
    return 'value';
  }
  return issue.code;
}

function convert(issue: OperationOutcomeIssue, resource: Resource, profile?: LoadedProfile): OperationOutcomeIssue {
  const text = issue.details?.text ?? issue.diagnostics ?? 'Invalid resource';
  return {
    severity: 'error',
    code: codeOf(issue),
    diagnostics: profile ? `${text} (profile ${profile.typeKey})` : text,
    expression: (issue.expression ?? []).map((e) => resolveChoiceSteps(e, resource)),
  };
}

/**
 * Validates against the base definition of the resource's type and against each profile of
 * `meta.profile` that `profiles` knows; an unknown profile is skipped, as HAPI does by default.
 * An issue a profile run repeats from the base run is reported once.
 */
export function validateWithDefinitions(resource: Resource, profiles: ProfileSet): DefinitionsResult {
  const base = run(() => compiledBaseIssues(resource));
  const result: DefinitionsResult = { issues: [], failure: base.failure };
  const seen = new Set<string>();
  const add = (issue: OperationOutcomeIssue, profile?: LoadedProfile): void => {
    const conflict = conflictingChoiceKeys(issue);
    if (conflict) {
      for (const error of choiceConflictIssues(resource, conflict)) {
        const key = `${error.expression?.join()}\u0000${error.diagnostics}`;
        if (!seen.has(key)) result.issues.push(error);
        seen.add(key);
      }
      return;
    }
    if (issue.severity !== 'error' && issue.severity !== 'fatal') return;
    const where = issue.expression?.[0] && resolveChoiceSteps(issue.expression[0], resource);
    if (isFalsePositive(issue, resource, where)) return;
    const key = `${issue.expression?.join()}\u0000${issue.details?.text}`;
    if (seen.has(key)) return;
    seen.add(key);
    result.issues.push(convert(issue, resource, profile));
  };
  for (const issue of base.issues) add(issue);

  const claimed = Array.isArray(resource.meta?.profile) ? resource.meta.profile : [];
  for (let i = 0; i < claimed.length; i++) {
    const profile = profiles.find(claimed[i]);
    if (!profile) continue;
    if (profile.kind !== 'resource' || profile.type !== resource.resourceType) {
      result.issues.push({
        severity: 'error',
        code: 'invalid',
        diagnostics: `The profile ${claimed[i]} constrains ${profile.type}, not ${resource.resourceType}`,
        expression: [`${resource.resourceType}.meta.profile[${i}]`],
      });
      continue;
    }
    const own = run(() => validateTypedValue({ type: profile.typeKey, value: resource }));
    result.failure ??= own.failure;
    for (const issue of own.issues) add(issue, profile);
  }
  return result;
}
