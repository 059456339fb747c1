/**
 * The rules of the base StructureDefinitions, compiled per type (compiled-types.ts) and checked by walking the
 * resource's JSON: the same findings as @medplum/core's `validateResource(resource)`, several times faster,
 * as @medplum/core's generic crawler wraps and looks up every property of every value on every call.
 *
 * Same findings means: the same issues (severity, code, text, location) at the same places, including
 * medplum's quirks, which the definitions layer then corrects (definitions-corrections.ts): cardinality
 * (reported at the element's definition path), JSON and format of primitives (with their `_name`
 * extensions walked as Element), choice types (the first type with a value wins; a second one is a
 * "Conflicting choice" warning), unknown properties, nulls, and the invariants of error severity other than
 * ele-1, dom-3, org-1 and sdf-19, evaluated with @medplum/core's FHIRPath at each element present and at the
 * root resource (a contained resource's root invariants are not checked, as medplum does not); ext-1, on every
 * extension, is evaluated in JavaScript (compiled-invariants.ts).
 * Reference target warnings and the primitive-extension type warning are not produced: they are warnings,
 * which the definitions layer drops.
 *
 * See: https://hl7.org/fhir/R4/validation.html
 */
import {
  OperationOutcomeError,
  createConstraintIssue,
  createOperationOutcomeIssue,
  createProcessingIssue,
  deepEquals,
  deepIncludes,
  evalFhirPathTyped,
  getDataType,
  toTypedValue,
  validateResource,
  validationError,
  type InternalTypeSchema,
  type TypedValue,
} from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import {
  NotCompilable,
  choiceOf,
  compileType,
  primitiveRule,
  type CompiledConstraint,
  type CompiledElement,
  type CompiledType,
} from './compiled-types.ts';
import { checkNulls, checkPrimitive, isEmpty, isResourceLike, readElement } from './compiled-values.ts';

const UCUM: TypedValue = toTypedValue('http://unitsofmeasure.org');

/** Resources validated by @medplum/core instead, per type, because a type on their way did not compile. */
const fallbacks = new Map<string, number>();

/** How many resources of each type fell back to @medplum/core since the process started. */
export function compiledRulesFallbacks(): Record<string, number> {
  return Object.fromEntries(fallbacks);
}

interface Walk {
  issues: OperationOutcomeIssue[];
  /** The resources being walked, innermost last, as FHIRPath's %resource. */
  resources: TypedValue[];
  root?: TypedValue;
}

function structure(walk: Walk, path: string, text: string): void {
  walk.issues.push(createOperationOutcomeIssue('error', 'structure', text, path));
}

/** Evaluates the invariants in order; the first that fails is reported, and no other at this value. */
function checkConstraints(walk: Walk, tv: TypedValue, path: string, constraints: CompiledConstraint[]): void {
  for (let i = 0; i < constraints.length; i++) {
    const { constraint, atom, parseError, native } = constraints[i];
    let ok = false;
    try {
      if (parseError) throw parseError;
      const known = native?.(tv);
      if (known !== undefined) {
        if (known) continue;
        walk.issues.push(createConstraintIssue(path, constraint));
        return;
      }
      const variables: Record<string, TypedValue> = { '%context': tv, '%ucum': UCUM };
      if (walk.resources.length > 0) variables['%resource'] = walk.resources[walk.resources.length - 1];
      if (walk.root) variables['%rootResource'] = walk.root;
      const result = evalFhirPathTyped(atom!, [tv], variables);
      ok = result.length === 1 && result[0].value === true;
    } catch (err) {
      walk.issues.push(
        createProcessingIssue(path, 'Error evaluating invariant expression', err as Error, {
          fhirpath: constraint.expression,
        }),
      );
    }
    if (!ok) {
      walk.issues.push(createConstraintIssue(path, constraint));
      return;
    }
  }
}

/** @medplum/core's matchesSpecifiedValue: the value includes the pattern, equals the fixed value. */
function matchesSpecified(value: TypedValue | TypedValue[], el: CompiledElement): boolean {
  const typeAndValue = Array.isArray(value) ? value.map((v) => ({ type: v.type, value: v.value })) : { type: value.type, value: value.value };
  if (el.pattern && !deepIncludes(typeAndValue, el.pattern)) return false;
  if (el.fixed && !deepEquals(typeAndValue, el.fixed)) return false;
  return true;
}

/** The checks of one element (visitProperty), then the walk into each of its complex values. */
function visitElement(walk: Walk, el: CompiledElement, found: TypedValue | TypedValue[] | undefined, path: string, basePath: string): void {
  if (found === undefined) {
    if (el.min > 0) structure(walk, `${path}.${el.key}`, 'Missing required property');
    return;
  }
  const single = !Array.isArray(found);
  if (el.isArray === single) {
    const text = single ? 'Expected array of values for property' : 'Expected single value for property';
    structure(walk, `${basePath}.${el.key}`, text);
  } else {
    const count = single ? 1 : (found as TypedValue[]).length;
    if (count < el.min || count > el.max) {
      const max = Number.isFinite(el.max) ? el.max : '*';
      structure(walk, el.element.path, `Invalid number of values: expected ${el.min}..${max}, but found ${count}`);
    }
    if ((el.pattern || el.fixed) && !matchesSpecified(found, el)) {
      structure(walk, `${basePath}.${el.key}`, 'Value did not match expected pattern');
    }
  }
  const checked = el.isArray !== single;
  const childBase = `${basePath}.${el.key}`;
  if (single) {
    visitValue(walk, el, found as TypedValue, `${path}.${el.key}`, childBase, checked);
  } else {
    const values = found as TypedValue[];
    const prefix = `${path}.${el.key}[`;
    for (let i = 0; i < values.length; i++) visitValue(walk, el, values[i], `${prefix}${i}]`, childBase, checked);
  }
}

function visitValue(walk: Walk, el: CompiledElement, tv: TypedValue, path: string, basePath: string, checked: boolean): void {
  const rule = primitiveRule(tv.type);
  if (checked) {
    if (el.constraints.length > 0) checkConstraints(walk, tv, path, el.constraints);
    if (rule) {
      const extension = checkPrimitive(tv, rule, path, walk.issues);
      if (extension) walkObject(walk, extension, getDataType('Element'), path, path);
    } else if (isEmpty(tv.value)) {
      structure(walk, path, 'Invalid empty non-primitive value');
    }
  }
  // The crawler walks into complex values even when the element's own checks stopped early.
  if (!rule) walkObject(walk, tv.value, getDataType(tv.type), path, basePath);
}

/**
 * One object of the resource against its type: the elements it holds and the required ones it lacks, in the
 * order of the type's elements (as @medplum/core visits them), then its unknown keys.
 */
function walkObject(walk: Walk, value: unknown, schema: InternalTypeSchema, path: string, basePath: string): void {
  const type = compileType(schema);
  const resource = isResourceLike(value);
  if (resource) walk.resources.push(toTypedValue(value));
  const keys = value ? Object.keys(value) : [];
  // element index × 256 + candidate index of each key that names an element, sorted: the first candidate of
  // an element is then the first of its types that has a value, as medplum picks it.
  const hits: number[] = [];
  const byKey = type.byKey;
  for (let i = 0; i < keys.length; i++) {
    const hit = byKey.get(keys[i]);
    if (hit !== undefined) hits.push(hit);
  }
  if (hits.length > 1) hits.sort((a, b) => a - b);
  const list = type.elementsList;
  const required = type.required;
  let present: string[] | undefined;
  let h = 0;
  let q = 0;
  while (h < hits.length || q < required.length) {
    const hitIndex = h < hits.length ? hits[h] >> 8 : Infinity;
    const requiredIndex = q < required.length ? required[q] : Infinity;
    if (requiredIndex < hitIndex) {
      visitElement(walk, list[requiredIndex], undefined, path, basePath);
      q++;
      continue;
    }
    if (requiredIndex === hitIndex) q++;
    const el = list[hitIndex];
    const found = readElement(value, el, hits[h] & 255);
    while (h < hits.length && hits[h] >> 8 === hitIndex) h++;
    if (found !== undefined && type.choiceIndex.has(el.key)) (present ??= []).push(el.key);
    visitElement(walk, el, found, path, basePath);
  }
  if (value) checkUnknownKeys(walk, keys, type, path, present);
  if (resource) walk.resources.pop();
}

/** checkAdditionalProperties: keys that name no element, and two types of one choice element side by side. */
function checkUnknownKeys(walk: Walk, keys: string[], type: CompiledType, path: string, present: string[] | undefined): void {
  const elements = type.schema.elements;
  let choices: Map<string, string> | undefined;
  for (const key of keys) {
    if (key === 'resourceType') continue;
    if (present) {
      const choice = choiceOf(type, key);
      if (choice !== null && present.includes(choice.startsWith('_') ? choice.slice(1) : choice)) {
        const earlier = (choices ??= new Map()).get(choice);
        if (earlier) {
          walk.issues.push(createOperationOutcomeIssue('warning', 'structure', `Conflicting choice of type properties: "${key}", "${earlier}"`, key));
        }
        choices.set(choice, key);
        continue;
      }
    }
    if (!(key in elements) && !(key.startsWith('_') && key.slice(1) in elements)) {
      structure(walk, `${path}.${key}`, `Invalid additional property "${key}"`);
    }
  }
}

/**
 * The issues of `validateResource(resource)` from @medplum/core, errors and warnings, returned rather than
 * thrown; it throws where @medplum/core throws for another reason (an unknown type, a malformed extension).
 */
export function compiledBaseIssues(resource: Resource): OperationOutcomeIssue[] {
  if (!resource.resourceType) throw new OperationOutcomeError(validationError('Missing resource type'));
  const root = toTypedValue(resource);
  const schema = getDataType(root.type);
  const walk: Walk = { issues: [], resources: [], root: isResourceLike(resource) ? root : undefined };
  if (isResourceLike(resource)) walk.resources.push(root);
  try {
    const type = compileType(schema);
    if (type.rootConstraints.length > 0) checkConstraints(walk, root, schema.path, type.rootConstraints);
    checkNulls(resource as unknown as Record<string, unknown>, schema.path, walk.issues);
    walkObject(walk, resource, schema, schema.path, schema.path);
  } catch (err) {
    if (!(err instanceof NotCompilable)) throw err;
    fallbacks.set(resource.resourceType, (fallbacks.get(resource.resourceType) ?? 0) + 1);
    try {
      return validateResource(resource);
    } catch (outcome) {
      if (outcome instanceof OperationOutcomeError) return outcome.outcome.issue ?? [];
      throw outcome;
    }
  }
  return walk.issues;
}
