/**
 * ajv's errors, turned into OperationOutcome issues in plain words at FHIRPath locations.
 *
 * See: https://hl7.org/fhir/R4/operationoutcome.html and https://hl7.org/fhir/R4/valueset-issue-type.html
 */
import type { ErrorObject } from 'ajv';
import type { OperationOutcomeIssue } from '@medplum/fhirtypes';
import { appendPointer, fhirPathMember, pointerToFhirPath } from './fhirpath-location.ts';
import type { NestedErrorParams } from './json-schema.ts';

/** The JSON value at a JSON pointer, for the diagnostics. */
function valueAt(root: unknown, pointer: string): unknown {
  let node = root;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    node = node && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
  }
  return node;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  const shown = JSON.stringify(value);
  return `${typeof value === 'number' ? 'the number' : `a ${typeof value}`} ${shown.length > 80 ? `${shown.slice(0, 77)}...` : shown}`;
}

/** `#/definitions/dateTime/pattern` names the FHIR type whose rule failed. */
function fhirTypeOf(error: ErrorObject): string | undefined {
  const schemaPath = (error.params as NestedErrorParams).fhirSchemaPath ?? error.schemaPath;
  return /^#\/definitions\/([^/]+)\/[^/]+$/.exec(schemaPath)?.[1];
}

const TYPE_RULES: Record<string, string> = {
  id: '1 to 64 characters, each a letter, a digit, "-" or "."',
  date: 'YYYY, YYYY-MM or YYYY-MM-DD',
  dateTime: 'YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone',
  instant: 'YYYY-MM-DDThh:mm:ss with a time zone',
  time: 'hh:mm:ss',
  code: 'no leading, trailing or double whitespace',
};

function issue(code: OperationOutcomeIssue['code'], expression: string, diagnostics: string): OperationOutcomeIssue {
  return { severity: 'error', code, diagnostics, expression: [expression] };
}

/**
 * Converts the errors of one validation of `resource` (whose type is `resourceType`).
 * A value that has the wrong JSON type also fails its type's pattern; only the type error is reported.
 */
export function schemaErrorsToIssues(resourceType: string, resource: unknown, errors: readonly ErrorObject[]): OperationOutcomeIssue[] {
  const wrongType = new Set(errors.filter((e) => e.keyword === 'type').map((e) => e.instancePath));
  const issues: OperationOutcomeIssue[] = [];
  for (const error of errors) {
    const at = error.instancePath;
    const path = pointerToFhirPath(resourceType, at);
    const value = valueAt(resource, at);
    const params = error.params as Record<string, unknown>;
    const fhirType = fhirTypeOf(error);
    switch (error.keyword) {
      case 'additionalProperties': {
        const name = String(params.additionalProperty);
        // The unknown key is named as written: an unknown `_x` stays `_x`.
        issues.push(issue('structure', path + fhirPathMember(name), `Unknown element "${name}"`));
        break;
      }
      case 'required':
        issues.push(
          issue(
            'required',
            pointerToFhirPath(resourceType, appendPointer(at, String(params.missingProperty))),
            `Missing required element "${String(params.missingProperty)}"`,
          ),
        );
        break;
      case 'type': {
        const expected = fhirType && fhirType !== params.type ? `${fhirType} (a JSON ${params.type})` : `a JSON ${params.type}`;
        issues.push(issue('structure', path, `Expected ${expected}, found ${describe(value)}`));
        break;
      }
      case 'pattern': {
        if (wrongType.has(at)) break;
        const rule = fhirType ? TYPE_RULES[fhirType] : undefined;
        const what = fhirType ?? 'value';
        issues.push(issue('value', path, `Invalid ${what}: ${describe(value)}${rule ? ` (expected ${rule})` : ''}`));
        break;
      }
      case 'enum': {
        const allowed = (params.allowedValues as unknown[]).map(String).join(', ');
        issues.push(issue('code-invalid', path, `Invalid code ${describe(value)}: expected one of ${allowed}`));
        break;
      }
      case 'const':
        issues.push(issue('value', path, `Expected ${JSON.stringify(params.allowedValue)}, found ${describe(value)}`));
        break;
      case 'resourceType':
        issues.push(issue('value', path, `Unknown resource type ${JSON.stringify(value)}: not a FHIR R4 resource type`));
        break;
      default:
        issues.push(issue('structure', path, `Invalid element: ${error.message ?? error.keyword}`));
    }
  }
  return issues;
}
