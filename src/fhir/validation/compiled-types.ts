/**
 * The checks of one FHIR type, compiled once from the InternalTypeSchema that @medplum/core built from its
 * StructureDefinition: per element, the JSON keys that may hold it (one per type of a choice element), its
 * cardinality, fixed or pattern value, primitive rules and invariants (each FHIRPath expression parsed once).
 * compiled-rules.ts walks a resource with them. See: https://hl7.org/fhir/R4/elementdefinition.html
 */
import {
  fhirTypeToJsType,
  isPrimitiveType,
  parseFhirPath,
  validationRegexes,
  type Constraint,
  type FhirPathAtom,
  type InternalSchemaElement,
  type InternalTypeSchema,
  type TypedValue,
} from '@medplum/core';
import { NATIVE_INVARIANTS } from './compiled-invariants.ts';

/**
 * Constraints @medplum/core does not evaluate (see `skippedConstraintKeys` in its typeschema/validation.ts);
 * only `error` severities count there.
 */
const SKIPPED_CONSTRAINTS = new Set(['ele-1', 'dom-3', 'org-1', 'sdf-19']);

/** A construct the compiler does not handle: the resource is then validated by @medplum/core itself. */
export class NotCompilable extends Error {
  readonly type: string;
  constructor(type: string, why: string) {
    super(`${type}: ${why}`);
    this.type = type;
  }
}

/** An invariant with its expression parsed (or the parse error, which medplum reports on every evaluation). */
export interface CompiledConstraint {
  constraint: Constraint;
  atom?: FhirPathAtom;
  parseError?: Error;
  /** The same invariant in JavaScript (compiled-invariants.ts); undefined from it means "ask FHIRPath". */
  native?: (tv: TypedValue) => boolean | undefined;
}

/** One JSON name an element can take: `valueQuantity` (and `_valueQuantity`) for the Quantity of value[x]. */
export interface Candidate {
  json: string;
  ext: string;
  code: string;
}

/** The checks of the type of one value, as @medplum/core's validatePrimitiveType does them. */
export interface PrimitiveRule {
  known: boolean;
  jsType?: 'string' | 'number' | 'boolean';
  regex?: RegExp;
}

export interface CompiledElement {
  /** The schema key: `name`, `value[x]`. */
  key: string;
  element: InternalSchemaElement;
  candidates: Candidate[];
  /** The first type's code: @medplum/core types an `Element` or `BackboneElement` value by it. */
  firstCode: string;
  isArray: boolean;
  min: number;
  max: number;
  constraints: CompiledConstraint[];
  fixed?: TypedValue;
  pattern?: TypedValue;
}

export interface CompiledType {
  schema: InternalTypeSchema;
  elementsList: CompiledElement[];
  /** The root invariants (checked only at the resource validated, as medplum does). */
  rootConstraints: CompiledConstraint[];
  /** Per JSON key: the choice element it would name (`value[x]`, `_value[x]`), or null; filled on use. */
  choiceOfKey: Map<string, string | null>;
  /** Schema key of a choice element → its index in elementsList. */
  choiceIndex: Map<string, number>;
  /** JSON key (`valueQuantity`, `_valueQuantity`) → element index × 256 + candidate index. */
  byKey: Map<string, number>;
  /** Indexes of the elements with min > 0, in order. */
  required: number[];
}

const atoms = new Map<string, CompiledConstraint['atom'] | Error>();

function compileConstraints(constraints: Constraint[] | undefined): CompiledConstraint[] {
  const out: CompiledConstraint[] = [];
  for (const constraint of constraints ?? []) {
    if (constraint.severity !== 'error' || SKIPPED_CONSTRAINTS.has(constraint.key)) continue;
    let parsed = atoms.get(constraint.expression);
    if (parsed === undefined) {
      try {
        parsed = parseFhirPath(constraint.expression);
      } catch (err) {
        parsed = err instanceof Error ? err : new Error(String(err));
      }
      atoms.set(constraint.expression, parsed);
    }
    const native = NATIVE_INVARIANTS[constraint.expression];
    out.push(parsed instanceof Error ? { constraint, parseError: parsed } : { constraint, atom: parsed, native });
  }
  return out;
}

function capitalize(word: string): string {
  return word ? word.charAt(0).toUpperCase() + word.substring(1) : '';
}

const primitiveRules = new Map<string, PrimitiveRule>();

/** How @medplum/core checks a value of a primitive type (undefined for a complex type). */
export function primitiveRule(code: string): PrimitiveRule | undefined {
  let rule = primitiveRules.get(code);
  if (!rule && isPrimitiveType(code)) {
    const jsType = (fhirTypeToJsType as Record<string, 'string' | 'number' | 'boolean'>)[code];
    rule = { known: jsType !== undefined, jsType, regex: validationRegexes[code] };
    primitiveRules.set(code, rule);
  }
  return rule;
}

const compiled = new WeakMap<InternalTypeSchema, CompiledType>();

/** The compiled checks of a type's schema, compiled at first use. Throws NotCompilable. */
export function compileType(schema: InternalTypeSchema): CompiledType {
  let type = compiled.get(schema);
  if (type) return type;
  const elementsList: CompiledElement[] = [];
  const choiceIndex = new Map<string, number>();
  const byKey = new Map<string, number>();
  const required: number[] = [];
  for (const [key, element] of Object.entries(schema.elements)) {
    if (key.includes('.')) throw new NotCompilable(schema.name, `nested element key ${key}`);
    if (element.slicing) throw new NotCompilable(schema.name, `slicing at ${key}`);
    if (!element.type?.length) throw new NotCompilable(schema.name, `untyped element ${key}`);
    const last = element.path.substring(element.path.lastIndexOf('.') + 1);
    const candidates = element.type.map((t) => {
      const json = last.replace('[x]', capitalize(t.code));
      return { json, ext: `_${json}`, code: t.code };
    });
    if (candidates.length > 255) throw new NotCompilable(schema.name, `too many types at ${key}`);
    candidates.forEach((c, i) => {
      if (byKey.has(c.json) || byKey.has(c.ext)) throw new NotCompilable(schema.name, `JSON name ${c.json} of two elements`);
      byKey.set(c.json, elementsList.length * 256 + i);
      byKey.set(c.ext, elementsList.length * 256 + i);
    });
    if (key.endsWith('[x]')) choiceIndex.set(key, elementsList.length);
    if (element.min > 0) required.push(elementsList.length);
    elementsList.push({
      key,
      element,
      candidates,
      firstCode: element.type[0].code,
      isArray: !!element.isArray,
      min: element.min,
      max: element.max,
      constraints: compileConstraints(element.constraints),
      fixed: element.fixed,
      pattern: element.pattern,
    });
  }
  type = {
    schema,
    elementsList,
    rootConstraints: compileConstraints(schema.constraints),
    choiceOfKey: new Map(),
    choiceIndex,
    byKey,
    required,
  };
  compiled.set(schema, type);
  return type;
}

/**
 * The choice element a JSON key names, as @medplum/core's isChoiceOfType finds it: the first prefix of the
 * key, cut before a capital letter, that is a `name[x]` element (`_valueString` → `_value[x]`).
 */
export function choiceOf(type: CompiledType, key: string): string | null {
  let found = type.choiceOfKey.get(key);
  if (found !== undefined) return found;
  found = null;
  if (type.choiceIndex.size > 0) {
    const prefix = key.startsWith('_') ? '_' : '';
    const name = prefix ? key.slice(1) : key;
    let test = '';
    for (const part of name.split(/(?=[A-Z])/g)) {
      test += part;
      if (type.schema.elements[`${test}[x]`]) {
        found = `${prefix}${test}[x]`;
        break;
      }
    }
  }
  // The keys come from clients: only so many are remembered.
  if (type.choiceOfKey.size < 1000) type.choiceOfKey.set(key, found);
  return found;
}
