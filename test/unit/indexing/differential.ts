/**
 * Differential check: the compiled evaluators against @medplum/core's FHIRPath.
 *
 * For each resource and each non-composite search parameter of its type, `evaluateParam` (the
 * applicable union parts, compiled, de-duplicated as a union) must give exactly what
 * `evalFhirPathTyped(<whole expression>, [toTypedValue(resource)])` gives: deep-equal distinct values
 * (see typeAndValue), ORDER INCLUDED (nothing is sorted). An expression that throws must throw in both.
 * The corpus is split over three test files so that tap runs them on both cores.
 */
import { isDeepStrictEqual } from 'node:util';
import { evalFhirPathTyped, parseFhirPath, toTypedValue, type FhirPathAtom, type TypedValue } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import { createR4Registry, evaluateParam, type IndexedParam } from '../../../src/indexing/registry.ts';

export const registry = createR4Registry();
const asts = new Map<string, FhirPathAtom>();

type Outcome = { values: TypedValue[] } | { error: string };

/**
 * The distinct values, by type and value, in the order first found. @medplum/core 5 records the
 * element path each value came from, and its union (`|`) compares values with the path included, so
 * it keeps equal values found at two places (a code in Observation.code and the same in a component);
 * the compiled union keeps one. A parameter's index rows are a set, so only the distinct values
 * matter: those must be equal, in order.
 */
export function typeAndValue(values: TypedValue[]): TypedValue[] {
  const seen = new Set<string>();
  return values
    .map(({ type, value }) => ({ type, value }))
    .filter((v) => {
      const key = JSON.stringify(v);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
}

function medplum(param: IndexedParam, resource: Resource): Outcome {
  let ast = asts.get(param.expression);
  if (!ast) asts.set(param.expression, (ast = parseFhirPath(param.expression)));
  try {
    return { values: typeAndValue(evalFhirPathTyped(ast, [toTypedValue(resource)])) };
  } catch (e) {
    return { error: String(e) };
  }
}

function compiled(param: IndexedParam, resource: Resource): Outcome {
  try {
    return { values: typeAndValue(evaluateParam(param, toTypedValue(resource))) };
  } catch (e) {
    return { error: String(e) };
  }
}

export interface DifferentialResult {
  resources: number;
  pairs: number;
  /** Pairs where @medplum/core found at least one value. */
  withValues: number;
  /** Pairs whose parameter has a part that runs on @medplum/core's FHIRPath. */
  fallbackPairs: number;
  /** The first 20 differences, described. */
  mismatches: string[];
}

export function differential(resources: Resource[]): DifferentialResult {
  const result: DifferentialResult = { resources: resources.length, pairs: 0, withValues: 0, fallbackPairs: 0, mismatches: [] };
  for (const resource of resources) {
    for (const param of registry.forType(resource.resourceType)) {
      if (param.type === 'composite') continue;
      result.pairs++;
      if (param.parts.some((p) => !p.compiled.compiled)) result.fallbackPairs++;
      const expected = medplum(param, resource);
      const actual = compiled(param, resource);
      if ('values' in expected && expected.values.length > 0) result.withValues++;
      const same = 'error' in expected ? 'error' in actual : 'values' in actual && isDeepStrictEqual(actual.values, expected.values);
      if (!same && result.mismatches.length < 20) {
        result.mismatches.push(
          `${resource.resourceType}/${resource.id} ${param.code}: expected ${JSON.stringify(expected).slice(0, 300)}` +
            ` got ${JSON.stringify(actual).slice(0, 300)}`,
        );
      }
    }
  }
  return result;
}

export function describe(label: string, r: DifferentialResult): string[] {
  return [
    `${label}: ${r.resources} resources, ${r.pairs} (resource, param) pairs compared, ${r.withValues} with values,`,
    `  ${r.fallbackPairs} pairs used the @medplum/core fallback, ${r.mismatches.length} mismatches`,
  ];
}
