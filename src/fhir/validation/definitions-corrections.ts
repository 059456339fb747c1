/**
 * Errors that @medplum/core's validator reports on resources that are valid R4, each recognised precisely
 * (by its message, then by checking the value at its location against the specification's own rule), so
 * that the rest of what the validator says still counts. Found by validating the official R4 examples.
 */
import { evalFhirPathTyped, tryGetDataType } from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { locationSteps, valueAtLocation } from './fhirpath-location.ts';

/** XML Schema's whitespace, the meaning of `\s` in the specification's regular expressions. */
const XSD_SPACE = /[ \t\n\r]/g;
const BASE64 = /^([A-Za-z\d+/]{4})*([A-Za-z\d+/]{2}==|[A-Za-z\d+/]{3}=)?$/;
const CODE = /^[^ \t\n\r]+([ \t\n\r][^ \t\n\r]+)*$/;
const URI = /^[^ \t\n\r]*$/;

/**
 * Invariants of R4 whose expression is wrong for some valid content, with an expression that says what the
 * invariant means. ras-2 (`probability is decimal implies (probability as decimal) <= 100`) evaluates to
 * empty, not true, when the prediction has no probability or a probabilityRange, and @medplum/core takes
 * empty for false; R5 rewrote it to test only a decimal probability.
 */
const CORRECTED_INVARIANTS: Record<string, string> = {
  'ras-2': '(probability as decimal).all($this <= 100)',
};

/** The FHIR type of the element at a location, by @medplum/core's definitions (undefined if unknown). */
export function elementTypeAt(resource: Resource, expression: string): string | undefined {
  const steps = locationSteps(expression);
  let type = String(steps[0]);
  let node: unknown = resource;
  for (const step of steps.slice(1)) {
    if (typeof step === 'number') {
      node = Array.isArray(node) ? node[step] : undefined;
      continue;
    }
    // A contained or entry resource is typed Resource: its own type is in its JSON.
    const own = (node as { resourceType?: unknown } | undefined)?.resourceType;
    if ((type === 'Resource' || type === 'DomainResource') && typeof own === 'string') type = own;
    const schema = tryGetDataType(type);
    if (!schema) return undefined;
    let next: string | undefined = schema.elements[step]?.type[0]?.code;
    if (!next) {
      // A choice element is named with its type: valueQuantity is value[x] of type Quantity.
      const choice = Object.keys(schema.elements).find((k) => k.endsWith('[x]') && step.startsWith(k.slice(0, -3)));
      if (!choice) return undefined;
      const suffix = step.slice(choice.length - 3).toLowerCase();
      next = schema.elements[choice].type.find((t) => t.code.toLowerCase() === suffix)?.code;
    }
    if (!next) return undefined;
    type = next;
    node = node && typeof node === 'object' ? (node as Record<string, unknown>)[step] : undefined;
  }
  return type;
}

/**
 * Is this issue (as @medplum/core wrote it, its location already resolved to JSON names) one of its
 * known false positives on this resource?
 */
export function isFalsePositive(issue: OperationOutcomeIssue, resource: Resource, expression: string | undefined): boolean {
  if (!expression) return false;
  const text = issue.details?.text ?? '';
  const value = (): unknown => valueAtLocation(resource, expression);

  // base64Binary is XML Schema's, which allows whitespace between the characters (line-wrapped data).
  if (text === 'Invalid base64Binary format') {
    const v = value();
    return typeof v === 'string' && BASE64.test(v.replace(XSD_SPACE, ''));
  }
  // The 1 MB limit is the string type's; a narrative (xhtml) or base64Binary data has none (the
  // request's size limit bounds it). @medplum/core 5 sets a limit of its own on base64Binary.
  if (/^base64Binary exceeds \d+ bytes$/.test(text)) return true;
  if (text === 'String cannot be larger than 1 MB') {
    const type = elementTypeAt(resource, expression);
    return type === 'xhtml' || type === 'base64Binary';
  }
  // Medplum's patterns use JavaScript's `\s` and trim(), which take U+00A0 and other Unicode spaces for
  // whitespace; the specification's patterns do not (see XSD_PATTERNS in json-schema.ts).
  if (text === 'Invalid code format') {
    const v = value();
    return typeof v === 'string' && CODE.test(v);
  }
  if (text === 'Invalid uri format' || text === 'Invalid url format' || text === 'Invalid canonical format') {
    const v = value();
    return typeof v === 'string' && URI.test(v);
  }
  if (text === 'String must contain non-whitespace content') {
    const v = value();
    return typeof v === 'string' && v.replace(XSD_SPACE, '').length > 0;
  }
  const key = /^Constraint (\S+) not met/.exec(text)?.[1];
  if (key && CORRECTED_INVARIANTS[key]) {
    const type = elementTypeAt(resource, expression);
    if (!type) return false;
    const result = evalFhirPathTyped(CORRECTED_INVARIANTS[key], [{ type, value: value() }]);
    return result.length === 1 && result[0].value === true;
  }
  return false;
}
