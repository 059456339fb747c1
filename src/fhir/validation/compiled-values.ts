/**
 * How @medplum/core's validator reads JSON, reproduced without its TypedValue crawler so that the compiled
 * rules (compiled-rules.ts) see exactly the values it sees: which JSON key holds an element (the first type
 * of a choice that has a value or a `_` sibling wins), how a primitive's `_name` extension is merged into it,
 * what counts as empty, and the format checks of primitive values.
 * Source: @medplum/core 4.5 fhirpath/utils.ts (getTypedPropertyValueWithSchema) and typeschema/validation.ts.
 */
import { createOperationOutcomeIssue, type TypedValue } from '@medplum/core';
import type { OperationOutcomeIssue } from '@medplum/fhirtypes';
import type { CompiledElement, PrimitiveRule } from './compiled-types.ts';

/** @medplum/core's isEmpty: null, undefined, '', and objects (or arrays, String objects) with nothing in them. */
export function isEmpty(v: unknown): boolean {
  if (v === null || v === undefined) return true;
  const t = typeof v;
  if (t === 'string') return v === '';
  if (t === 'object') {
    const o = v as { length?: number };
    return !(('length' in o && (o.length as number) > 0) || Object.keys(o).length > 0);
  }
  return false;
}

/** A JSON object holding `resourceType` (any value), as @medplum/core's isResource decides. */
export function isResourceLike(v: unknown): v is { resourceType: unknown } {
  return !!v && typeof v === 'object' && 'resourceType' in v;
}

/** Merges a primitive's `_name` object into its value: a String, Number or Boolean object with `extension`. */
function assignExtension(target: unknown, extension: unknown): unknown {
  if (!extension) return target;
  if (typeof extension !== 'object') throw new Error('Primitive extension must be an object');
  // @medplum/core assigns into an object target in place; a copy gives the same value without touching the input.
  const base = target !== null && typeof target === 'object' ? { ...target } : (target ?? {});
  return Object.assign(base, extension);
}

/**
 * The value(s) of one element in `obj`, typed, or undefined when absent or empty: getTypedPropertyValueWithSchema.
 * `from` skips the candidates (types of a choice) known to be absent.
 */
export function readElement(obj: unknown, el: CompiledElement, from = 0): TypedValue | TypedValue[] | undefined {
  if (!obj) return undefined;
  const o = obj as Record<string, unknown>;
  let value: unknown;
  let extension: unknown;
  let type = 'undefined';
  const candidates = el.candidates;
  for (let i = from; i < candidates.length; i++) {
    const c = candidates[i];
    value = o[c.json];
    extension = o[c.ext];
    if (value !== undefined || extension !== undefined) {
      type = c.code;
      break;
    }
  }
  if (value === undefined && extension === undefined) return undefined;
  if (extension) {
    const ext = extension as Record<number, unknown> & { length: number };
    if (Array.isArray(value)) {
      const merged = value.slice();
      for (let i = 0; i < Math.max(merged.length, ext.length); i++) merged[i] = assignExtension(merged[i], ext[i]);
      value = merged;
    } else if (!value && Array.isArray(ext)) {
      const merged = ext.slice();
      for (let i = 0; i < ext.length; i++) merged[i] = assignExtension(undefined, ext[i]);
      value = merged;
    } else {
      value = assignExtension(value, ext);
    }
  }
  if (isEmpty(value)) return undefined;
  if (type === 'Element' || type === 'BackboneElement') type = el.firstCode;
  if (Array.isArray(value)) {
    const out: TypedValue[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) out[i] = typed(value[i], type);
    return out;
  }
  return typed(value, type);
}

function typed(value: unknown, type: string): TypedValue {
  if (type === 'Resource' && isResourceLike(value)) return { type: value.resourceType as string, value };
  return { type, value };
}

const structure = (path: string, text: string): OperationOutcomeIssue => createOperationOutcomeIssue('error', 'structure', text, path);

/**
 * A primitive value's own checks (validatePrimitiveType): its JSON type, then the string or number rules.
 * Returns the extension part of the value (`id`, `extension`) to be walked as an Element, if any.
 */
export function checkPrimitive(
  tv: TypedValue,
  rule: PrimitiveRule,
  path: string,
  issues: OperationOutcomeIssue[],
): Record<string, unknown> | undefined {
  const v = tv.value as unknown;
  let primitive: unknown;
  let extension: Record<string, unknown> | undefined;
  if (typeof v !== 'object' || v === null) {
    primitive = v;
  } else {
    const unwrapped = (v as { valueOf(): unknown }).valueOf();
    if (unwrapped === v) return v as Record<string, unknown>;
    primitive = unwrapped;
    const own = new Set(Object.keys(unwrapped as object));
    const entries = Object.entries(v).filter(([k]) => !own.has(k));
    extension = entries.length > 0 ? Object.fromEntries(entries) : undefined;
  }
  if (!rule.known) {
    issues.push(structure(path, `Invalid JSON type: ${tv.type} is not a valid FHIR type`));
    return undefined;
  }
  if (typeof primitive !== rule.jsType) {
    if (primitive !== null) {
      issues.push(structure(path, `Invalid JSON type: expected ${rule.jsType}, but got ${typeof primitive}`));
    }
    return undefined;
  }
  if (tv.type === 'base64Binary') {
    checkBase64Binary(primitive as string, path, issues);
  } else if (rule.jsType === 'string') {
    const str = primitive as string;
    if (!str.trim()) issues.push(structure(path, 'String must contain non-whitespace content'));
    else if (str.length > 1024 * 1024) issues.push(structure(path, 'String cannot be larger than 1 MB'));
    else if (rule.regex && !rule.regex.exec(str)) issues.push(structure(path, `Invalid ${tv.type} format`));
    else if ((tv.type === 'date' || tv.type === 'dateTime' || tv.type === 'instant') && !isCalendarDate(str)) {
      issues.push(structure(path, `Invalid ${tv.type} value`));
    }
  } else if (rule.jsType === 'number') {
    const n = primitive as number;
    const min = INTEGER_MIN[tv.type];
    if (Number.isNaN(n) || !Number.isFinite(n)) issues.push(structure(path, 'Invalid numeric value'));
    else if (min !== undefined && !Number.isInteger(n)) issues.push(structure(path, 'Expected number to be an integer'));
    else if (min !== undefined && (n < min || n > INTEGER_MAX))
      issues.push(structure(path, `Expected number to be in the range ${min}..${INTEGER_MAX}`));
  }
  return extension;
}

/** The integer types' least values; all end at 2^31 - 1 (R4 datatypes §2.24.0.1). */
const INTEGER_MIN: Record<string, number> = { integer: -2_147_483_648, positiveInt: 1, unsignedInt: 0 };
const INTEGER_MAX = 2_147_483_647;

/** The day exists in its month (2023-02-29 does not); a value without a day passes. */
function isCalendarDate(str: string): boolean {
  if (str.length < 10) return true;
  const year = Number.parseInt(str.substring(0, 4), 10);
  const month = Number.parseInt(str.substring(5, 7), 10);
  return Number.parseInt(str.substring(8, 10), 10) <= new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** @medplum/core's own base64Binary limit (its validator's default), which it reports; see definitions-corrections.ts. */
const BASE64_MAX_BYTES = 1024 * 1024;

/**
 * base64Binary as @medplum/core 5 checks it: no string checks (blank, 1 MB), the alphabet and the
 * padding, no whitespace (which definitions-corrections.ts forgives), and an approximate decoded size.
 */
function checkBase64Binary(str: string, path: string, issues: OperationOutcomeIssue[]): void {
  const padding = str.endsWith('==') ? 2 : str.endsWith('=') ? 1 : 0;
  const data = padding ? str.slice(0, -padding) : str;
  if (!str.length || str.length % 4 !== 0 || !/^[A-Za-z\d+/]+$/.test(data)) {
    issues.push(structure(path, 'Invalid base64Binary format'));
    return;
  }
  if (Math.max(0, Math.floor((str.length * 3) / 4) - padding) > BASE64_MAX_BYTES) {
    issues.push(structure(path, `base64Binary exceeds ${BASE64_MAX_BYTES} bytes`));
  }
}

/** `null` anywhere in the resource, except in an array of primitives whose `_` sibling has an item there. */
export function checkNulls(obj: Record<string, unknown>, path: string, issues: OperationOutcomeIssue[]): void {
  for (const key of Object.keys(obj)) {
    const value = obj[key];
    if (value === null) {
      issues.push(structure(`${path}.${key}`, 'Invalid null value'));
    } else if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const item = value[i];
        if (item === undefined) {
          issues.push(structure(`${path}.${key}[${i}]`, 'Invalid undefined value'));
        } else if (item === null) {
          const partner = obj[key.startsWith('_') ? key.slice(1) : `_${key}`] as Record<number, unknown> | undefined;
          if (!partner?.[i]) issues.push(structure(`${path}.${key}[${i}]`, 'Invalid null value'));
        } else if (item && typeof item === 'object') {
          checkNulls(item, `${path}.${key}[${i}]`, issues);
        }
      }
    } else if (typeof value === 'object') {
      checkNulls(value as Record<string, unknown>, `${path}.${key}`, issues);
    }
  }
}
