/**
 * Invariants evaluated by JavaScript instead of FHIRPath, where FHIRPath is the cost: ext-1 holds on every
 * extension, and @medplum/core's FHIRPath finds `value` by trying each of value[x]'s ~50 types by name.
 * Each function gives the result @medplum/core's FHIRPath gives for that exact expression (same property
 * reading, same `exists()`), and answers undefined where it does not know, leaving the case to FHIRPath;
 * test/unit/fhir/compiled-rules.test.ts checks them against @medplum/core on real and broken extensions.
 *
 * See: https://hl7.org/fhir/R4/extensibility.html#ext-1
 */
import { getDataType, type TypedValue } from '@medplum/core';
import { compileType, type CompiledElement } from './compiled-types.ts';
import { isEmpty, readElement } from './compiled-values.ts';

/** FHIRPath `name.exists()` on one object: the values read, without undefined ones, all non-empty. */
function exists(object: unknown, el: CompiledElement): boolean {
  const found = readElement(object, el);
  if (found === undefined) return false;
  const items = Array.isArray(found) ? found : [found];
  let count = 0;
  for (const item of items) {
    if (item.value === undefined) continue;
    if (isEmpty(item.value)) return false;
    count++;
  }
  return count > 0;
}

let extensionElements: { extension: CompiledElement; value: CompiledElement } | undefined;

/** ext-1 `extension.exists() != value.exists()` on an Extension. */
function ext1(tv: TypedValue): boolean | undefined {
  const v = tv.value as unknown;
  if (tv.type !== 'Extension') return undefined;
  // A symbol on a non-object yields nothing; one on a resource may name its type: left to FHIRPath.
  if (!v || typeof v !== 'object') return false;
  if ('resourceType' in v) return undefined;
  if (!extensionElements) {
    const type = compileType(getDataType('Extension'));
    const find = (key: string): CompiledElement => type.elementsList.find((e) => e.key === key) as CompiledElement;
    extensionElements = { extension: find('extension'), value: find('value[x]') };
  }
  return exists(v, extensionElements.extension) !== exists(v, extensionElements.value);
}

/** By expression: a compiled invariant applies only to the very expression it was written for. */
export const NATIVE_INVARIANTS: Record<string, (tv: TypedValue) => boolean | undefined> = {
  'extension.exists() != value.exists()': ext1,
};
