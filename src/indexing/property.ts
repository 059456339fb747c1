/**
 * One FHIRPath member step (`.name`), with @medplum/core's exact typing rules but without its
 * per-call schema lookups.
 *
 * @medplum/core's SymbolAtom looks up the element definition for (input type, name) on every value
 * it visits (a hash lookup plus, for choice types, a scan over the capital letters of the name),
 * then builds TypedValues. Here the lookup is done once per (input type, name) and remembered, so
 * the hot path is two property reads. The rare shapes (primitive extensions `_name`, values of a
 * type without a schema) go through @medplum/core's own functions, so the result is the same.
 * See: https://hl7.org/fhirpath/N1/#path-selection
 */
import {
  getElementDefinition,
  getTypedPropertyValueWithoutSchema,
  getTypedPropertyValueWithSchema,
  type InternalSchemaElement,
  type TypedValue,
} from '@medplum/core';

/** How to read one element of one type: the JSON property names to try, in the schema's type order. */
interface ElementPlan {
  element: InternalSchemaElement;
  /** JSON keys to try (`value[x]` becomes `valueQuantity`, `valueString`, ...). */
  keys: string[];
  /** The matching primitive-extension keys (`_valueString`). */
  extKeys: string[];
  /** The FHIR type each key implies. */
  codes: string[];
}

export type Step = (input: TypedValue[]) => TypedValue[];

/** Input types remembered per step; real FHIR has a few hundred types in all. */
const MAX_PLANS = 1000;

function capitalize(word: string): string {
  return word ? word.charAt(0).toUpperCase() + word.substring(1) : '';
}

function makePlan(element: InternalSchemaElement): ElementPlan {
  // As getTypedPropertyValueWithSchema: candidate keys come from the element's own path, so
  // `valueDateTime` on Extension tries every value[x] type in order, like @medplum/core does.
  const last = element.path.substring(element.path.lastIndexOf('.') + 1);
  const keys: string[] = [];
  const extKeys: string[] = [];
  const codes: string[] = [];
  for (const type of element.type ?? []) {
    const key = last.replace('[x]', capitalize(type.code));
    keys.push(key);
    extKeys.push('_' + key);
    let code = type.code;
    if (code === 'Element' || code === 'BackboneElement') code = element.type[0].code;
    codes.push(code);
  }
  return { element, keys, extKeys, codes };
}

/** @medplum/core's isEmpty for JSON values: null, '', [] and {} are empty. */
export function isEmptyValue(v: unknown): boolean {
  if (v === null || v === undefined) return true;
  const t = typeof v;
  if (t === 'string') return v === '';
  if (t !== 'object') return false;
  if (Array.isArray(v)) return v.length === 0;
  for (const _ in v as object) return false;
  return true;
}

function typed(value: any, type: string): TypedValue {
  if (type === 'Resource' && value && typeof value === 'object' && 'resourceType' in value) {
    return { type: value.resourceType, value };
  }
  return { type, value };
}

function pushAll(out: TypedValue[], result: TypedValue[] | TypedValue | undefined): void {
  if (result === undefined) return;
  if (Array.isArray(result)) {
    for (const r of result) if (r?.value !== undefined) out.push(r);
  } else if (result.value !== undefined) {
    out.push(result);
  }
}

/** Compile `.name` into a step over a collection, as @medplum/core's SymbolAtom evaluates it. */
export function propertyStep(name: string): Step {
  const plans = new Map<string, ElementPlan | null>();
  const planFor = (type: string): ElementPlan | null => {
    let plan = plans.get(type);
    if (plan === undefined) {
      const element = getElementDefinition(type, name);
      plan = element ? makePlan(element) : null;
      // Types can come from the data (an embedded resource's resourceType): keep the memo bounded.
      if (plans.size < MAX_PLANS) plans.set(type, plan);
    }
    return plan;
  };

  return (input) => {
    const out: TypedValue[] = [];
    for (let i = 0; i < input.length; i++) {
      const tv = input[i];
      const v = tv.value;
      if (!v || typeof v !== 'object') continue;
      // A resource named by its type is the resource itself: `Patient` in `Patient.name`.
      if (v.resourceType === name) {
        out.push(tv);
        continue;
      }
      const plan = planFor(tv.type);
      if (plan === null) {
        pushAll(out, getTypedPropertyValueWithoutSchema(tv, name));
        continue;
      }
      const { keys, extKeys } = plan;
      let found = -1;
      let raw: any;
      for (let k = 0; k < keys.length; k++) {
        raw = v[keys[k]];
        if (raw !== undefined || v[extKeys[k]] !== undefined) {
          found = k;
          break;
        }
      }
      if (found < 0) continue;
      if (v[extKeys[found]] !== undefined) {
        // Primitive extensions merge into the value: rare, so let @medplum/core do it exactly.
        pushAll(out, getTypedPropertyValueWithSchema(tv, name, plan.element));
        continue;
      }
      if (isEmptyValue(raw)) continue;
      const code = plan.codes[found];
      if (Array.isArray(raw)) {
        for (let j = 0; j < raw.length; j++) if (raw[j] !== undefined) out.push(typed(raw[j], code));
      } else {
        out.push(typed(raw, code));
      }
    }
    return out;
  };
}
