/**
 * Index a resource: every search parameter of its type, into the rows HAPI's JPA server writes
 * (hfj_spidx_*, hfj_res_link, hfj_res_param_present).
 *
 * With `indexMissing` (HAPI's "index missing fields"), a parameter with no value gets one row with
 * sp_missing = true in its table (reference parameters: an hfj_res_param_present row). It is off
 * by default, as in HAPI: those rows are about half of all rows written, and `:missing` can be
 * answered by the absence of value rows instead. Composite parameters make no rows (search joins
 * their components).
 * See: https://hl7.org/fhir/R4/search.html and https://hl7.org/fhir/R4/search.html#missing
 */
import { toTypedValue, type TypedValue } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import { addDate, addNumber, addQuantity, addSpecial, addString, addToken, addUri, unwrapExtension } from './convert.ts';
import { linkTarget } from './references.ts';
import type { ExpressionPart, IndexedParam, SearchParamRegistry } from './registry.ts';
import { IndexCollector } from './rows.ts';
import type { ResourceIndexes } from './types.ts';

export interface ExtractOptions {
  /** Put the partition id into every hash (HAPI's "include partition in search hashes"). */
  partitionId?: number | null;
  /**
   * Called when an expression fails on this resource (e.g. `and` over a repeated element);
   * that part then yields nothing. Without it such failures are ignored.
   */
  onError?: (param: IndexedParam, path: string, error: unknown) => void;
  /** Write sp_missing rows and hfj_res_param_present rows (off by default, as in HAPI). */
  indexMissing?: boolean;
}

type Converter = (c: IndexCollector, name: string, tv: TypedValue) => void;

const CONVERTERS: Partial<Record<IndexedParam['type'], Converter>> = {
  string: addString,
  token: addToken,
  date: addDate,
  number: addNumber,
  quantity: addQuantity,
  uri: addUri,
  special: addSpecial,
};

/** HAPI gives the codes a CodeSystem defines the CodeSystem's url as their token system. */
const CODE_SYSTEM_CODES = 'CodeSystem.concept.code';

/** The table a parameter type's rows go to, for the missing-value rows. */
type MissingTable = 'strings' | 'tokens' | 'dates' | 'numbers' | 'quantities' | 'uris';
const TABLE: Partial<Record<IndexedParam['type'], MissingTable>> = {
  string: 'strings',
  token: 'tokens',
  date: 'dates',
  number: 'numbers',
  quantity: 'quantities',
  uri: 'uris',
};

function evaluatePart(param: IndexedParam, part: ExpressionPart, root: TypedValue, options: ExtractOptions | undefined): TypedValue[] {
  try {
    return part.compiled.evaluate(root);
  } catch (error) {
    options?.onError?.(param, part.path, error);
    return [];
  }
}

/** The index rows of one resource, for every search parameter the registry holds for its type. */
export function extractIndexes(resource: Resource, registry: SearchParamRegistry, options?: ExtractOptions): ResourceIndexes {
  const c = new IndexCollector(resource.resourceType, options?.partitionId ?? null);
  const root = toTypedValue(resource);
  const params = registry.forType(resource.resourceType);

  for (const param of params) {
    if (param.type === 'composite') continue;
    const name = param.code;
    const convert = CONVERTERS[param.type];
    for (const part of param.parts) {
      const codeSystemCodes = part.path === CODE_SYSTEM_CODES;
      for (const value of evaluatePart(param, part, root, options)) {
        const tv = unwrapExtension(value);
        if (!tv || tv.value === null || tv.value === undefined) continue;
        if (param.type === 'reference') {
          const t = linkTarget(tv);
          if (t) c.link(name, part.path, t.targetType, t.targetId, t.targetUrl, t.targetVersion);
          // A logical reference (Reference.identifier) is a token of `name:identifier`, for the
          // `:identifier` modifier (as HAPI indexes it).
          const ident = (tv.value as { identifier?: { system?: string; value?: string } }).identifier;
          if (ident && typeof ident.value === 'string' && ident.value.trim()) c.token(`${name}:identifier`, ident.system ?? null, ident.value);
        } else if (codeSystemCodes && typeof tv.value === 'string') {
          c.token(name, (resource as { url?: string }).url, tv.value);
        } else if (part.codeSystem && tv.type === 'code' && typeof tv.value === 'string') {
          c.token(name, part.codeSystem, tv.value);
        } else {
          convert?.(c, name, tv);
        }
      }
    }
  }

  if (options?.indexMissing) addMissing(c, params);
  return c.rows;
}

/** HAPI's ResourceIndexedSearchParams.findMissingSearchParams, plus hfj_res_param_present. */
function addMissing(c: IndexCollector, params: readonly IndexedParam[]): void {
  const rows = c.rows;
  const names = (list: { name: string }[]): Set<string> => new Set(list.map((r) => r.name));
  const found: Record<MissingTable, Set<string>> = {
    strings: names(rows.strings),
    tokens: names(rows.tokens),
    dates: names(rows.dates),
    numbers: names(rows.numbers),
    quantities: names(rows.quantities),
    uris: names(rows.uris),
  };
  const linked = names(rows.links);

  for (const param of params) {
    const name = param.code;
    if (param.type === 'reference') {
      const present = linked.has(name);
      rows.present.push({ name, present, hashPresence: c.hashes(name).of(present ? 'true' : 'false') });
      continue;
    }
    const table = TABLE[param.type];
    if (!table || found[table].has(name)) continue;
    // Only hash_identity is meaningful on a missing row: `:missing` queries use it with sp_missing.
    const base = { name, missing: true, hashIdentity: c.hashes(name).identity };
    switch (table) {
      case 'strings':
        rows.strings.push({ ...base, valueExact: null, valueNormalized: null, hashExact: null, hashNormPrefix: null });
        break;
      case 'tokens':
        rows.tokens.push({ ...base, system: null, value: null, hashSys: null, hashSysAndValue: null, hashValue: null });
        break;
      case 'dates':
        rows.dates.push({ ...base, low: null, high: null, lowOrdinal: null, highOrdinal: null });
        break;
      case 'numbers':
        rows.numbers.push({ ...base, value: null });
        break;
      case 'quantities':
        rows.quantities.push({
          ...base,
          system: null,
          units: null,
          value: null,
          hashIdentityAndUnits: null,
          hashIdentitySysUnits: null,
        });
        break;
      case 'uris':
        rows.uris.push({ ...base, uri: null, hashUri: null });
        break;
    }
  }
}
