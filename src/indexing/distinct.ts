/**
 * FHIRPath union de-duplication with @medplum/core's equality, in linear time for strings.
 *
 * @medplum/core's removeDuplicates compares every value with every kept one (fhirPathEquals), which
 * is quadratic: a ValueSet expansion of 5,000 codes takes seconds. Its equality never holds
 * between a string, a boolean, a number and an object, so each kind is de-duplicated on its own:
 * strings and booleans exactly with a Set, numbers (equal within 1e-8) and objects (Quantity
 * equivalence, else deep equality of the TypedValue) by @medplum/core's own comparison.
 * The first occurrence of each value is kept, in order, as removeDuplicates keeps it.
 * See: https://hl7.org/fhirpath/N1/#union-other-collection
 */
import { fhirPathEquals, type TypedValue } from '@medplum/core';

export function distinctValues(values: TypedValue[]): TypedValue[] {
  if (values.length < 2) return values;
  const out: TypedValue[] = [];
  const strings = new Set<string>();
  const booleans = new Set<boolean>();
  const others: TypedValue[] = [];
  let sawEmpty = false;
  for (const tv of values) {
    const v = tv.value?.valueOf();
    if (typeof v === 'string') {
      if (strings.has(v)) continue;
      strings.add(v);
    } else if (typeof v === 'boolean') {
      if (booleans.has(v)) continue;
      booleans.add(v);
    } else if (v === undefined || v === null) {
      // valueOf() of null or undefined is undefined: all such values are equal.
      if (sawEmpty) continue;
      sawEmpty = true;
    } else {
      if (others.some((o) => fhirPathEquals(tv, o)[0].value === true)) continue;
      others.push(tv);
    }
    out.push(tv);
  }
  return out;
}
