/**
 * Locations of bad elements, written as FHIRPath, as an OperationOutcome's `issue.expression` carries them.
 *
 * See: https://hl7.org/fhir/R4/operationoutcome-definitions.html#OperationOutcome.issue.expression
 * See: https://hl7.org/fhirpath/N1/#paths-and-polymorphic-items
 */

/** A FHIRPath identifier needs no delimiting; anything else (an unknown key with a space, say) is backquoted. */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** One step `.name` of a FHIRPath, for any JSON key. */
export function fhirPathMember(name: string): string {
  return IDENTIFIER.test(name) ? `.${name}` : `.\`${name.replace(/[`\\]/g, '\\$&')}\``;
}

/**
 * Turns a JSON pointer into a resource (ajv's `instancePath`, `/name/0/given/1`) into a FHIRPath
 * location (`Patient.name[0].given[1]`).
 *
 * The extension of a primitive is written in JSON as `_given` beside `given`; FHIRPath knows one element
 * that has both the value and the extensions, so `/_given/0/extension` becomes `given[0].extension`.
 * Choice elements keep their JSON name (`valueQuantity`), the form HAPI and the validators report.
 */
export function pointerToFhirPath(root: string, pointer: string): string {
  let path = root;
  if (pointer === '') return path;
  const segments = pointer.split('/');
  // segments[0] is the empty string before the first '/'.
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i].replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^(0|[1-9][0-9]*)$/.test(segment)) {
      path += `[${segment}]`;
    } else if (segment.length > 1 && segment.startsWith('_')) {
      path += fhirPathMember(segment.slice(1));
    } else {
      path += fhirPathMember(segment);
    }
  }
  return path;
}

/** Appends a JSON key (known or not) to a JSON pointer. */
export function appendPointer(pointer: string, key: string): string {
  return `${pointer}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
}

/**
 * @medplum/core names a choice element by its definition (`Observation.value[x].value`); this resolves each
 * `name[x]` step against the resource to the JSON name it has there (`Observation.valueQuantity.value`),
 * so that both validators name a location alike. A step that cannot be resolved is left as it is.
 */
export function resolveChoiceSteps(expression: string, resource: unknown): string {
  if (!expression.includes('[x]')) return expression;
  const steps = expression.match(/[^.[\]]+(\[x\])?|\[\d+\]/g);
  if (!steps) return expression;
  // The first step is the type name; the walk starts at the resource itself.
  let node: unknown = resource;
  let out = steps[0];
  for (let i = 1; i < steps.length; i++) {
    const step = steps[i];
    if (step.startsWith('[')) {
      out += step;
      node = Array.isArray(node) ? node[Number(step.slice(1, -1))] : undefined;
      continue;
    }
    let name = step;
    if (step.endsWith('[x]') && node && typeof node === 'object') {
      const prefix = step.slice(0, -3);
      const key = Object.keys(node).find((k) => k.length > prefix.length && k.startsWith(prefix) && /[A-Z]/.test(k[prefix.length]));
      if (key) name = key;
    }
    out += `.${name}`;
    node = node && typeof node === 'object' ? (node as Record<string, unknown>)[name] : undefined;
  }
  return out;
}

/** One step of a location: a member name or an index. */
export type LocationStep = string | number;

/** Splits a location written as above (`Patient.name[0].given[1]`) into its steps, the type name first. */
export function locationSteps(expression: string): LocationStep[] {
  const steps: LocationStep[] = [];
  for (const m of expression.matchAll(/`((?:[^`\\]|\\.)*)`|\[(\d+)\]|([^.[\]`]+)/g)) {
    if (m[2] !== undefined) steps.push(Number(m[2]));
    else steps.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[3]);
  }
  return steps;
}

/** The JSON value at a location in `resource` (undefined where there is none). */
export function valueAtLocation(resource: unknown, expression: string): unknown {
  let node = resource;
  for (const step of locationSteps(expression).slice(1)) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string | number, unknown>)[step];
  }
  return node;
}
