/**
 * Subscription criteria evaluated in memory against a written resource's index rows (the
 * ResourceIndexes the write carries), never by searching the store: token, string, reference,
 * date and uri parameters and `_id`, with the semantics of the search engine's SQL
 * (src/search/params/). What cannot be told from the rows alone (chains, `_has`, `:missing`,
 * `:in`, `:text`, number and quantity, `_tag`, `_lastUpdated`...) is left to a SQL match of the
 * one resource (SearchEngine.match with `_id`) before the notification goes out.
 * See: https://hl7.org/fhir/R4/search.html
 */
import type { SearchParamInfo, SearchParamLookup } from '../fhir/ports.ts';
import { isResourceType } from '../fhir/resource-type.ts';
import type { ResourceIndexes } from '../indexing/types.ts';
import { normalizeString } from '../storage/hash.ts';
import { CONTROL_PARAMS, parseKey } from '../search/params/key.ts';
import { known } from '../search/parse.ts';
import { parseDate, prefixOf, splitBar, splitOr, unescape, type Prefix } from '../search/values.ts';

/** What a test sees of a written version. */
export interface Candidate {
  id: string;
  indexes: ResourceIndexes;
}

type Test = (c: Candidate) => boolean;

export interface CompiledCriteria {
  /** Every one must hold (repeated parameters AND, as in a search). */
  tests: Test[];
  /** Parameters left to SQL: when any, a match is checked by a search of the one resource before it is sent. */
  deferred: [string, string][];
  /**
   * Index keys of which a matching resource has at least one (from a plain token parameter, or
   * `_id`): the registry files the subscription under them, so a write looks only at the
   * subscriptions its own rows name. Empty: the subscription is looked at for every write of its type.
   */
  keys: string[];
}

/** A token row's keys, as CompiledCriteria.keys names them. */
export function tokenKeys(name: string, system: string | null, value: string | null): string[] {
  return [`t\0${name}\0${system ?? ''}\0${value ?? ''}`, `v\0${name}\0${value ?? ''}`];
}
export const idKey = (id: string): string => `i\0${id}`;

/** Compiles the criteria of a search of `type`; throws an Error naming what is not a valid criterion. */
export function compileCriteria(params: SearchParamLookup, type: string, criteria: [string, string][], baseUrls: string[]): CompiledCriteria {
  const out: CompiledCriteria = { tests: [], deferred: [], keys: [] };
  let keyed = false;
  for (const [key, raw] of criteria) {
    if (CONTROL_PARAMS.has(key) || key === '_sort') throw new Error(`${key} shapes a search's answer and is no criterion.`);
    if (!known(params, type, key)) throw new Error(`${type} has no search parameter "${key.split(/[:.]/)[0]}".`);
    const k = parseKey(key);
    const values = splitOr(raw).filter((v) => v !== '');
    if (!values.length && k.modifier !== 'missing') throw new Error(`${key} has an empty value.`);
    const sp = params.get(type, k.code);
    let test: Test | undefined;
    if (key.startsWith('_has:') || k.chain !== null) test = undefined;
    else if (k.code === '_id' && !k.modifier) {
      const ids = new Set(values.map(unescape));
      test = (c) => ids.has(c.id);
      if (!keyed) ((out.keys = [...ids].map(idKey)), (keyed = true));
    } else if (sp && sp.type === 'token' && (k.modifier === '' || k.modifier === 'not')) {
      const t = tokenTest(sp.code, values);
      test = k.modifier === 'not' ? (c) => !t.test(c) : t.test;
      if (k.modifier === '' && t.keys && !keyed) ((out.keys = t.keys), (keyed = true));
    } else if (sp && sp.type === 'string' && ['', 'exact', 'contains'].includes(k.modifier))
      test = stringTest(sp.code, values.map(unescape), k.modifier);
    else if (sp && sp.type === 'reference' && (k.modifier === '' || k.modifier === 'not' || isResourceType(k.modifier))) {
      const t = referenceTest(sp, values.map(unescape), k.modifier === 'not' ? '' : k.modifier, baseUrls);
      test = k.modifier === 'not' ? (c) => !t(c) : t;
    } else if (sp && sp.type === 'date' && !k.modifier) test = dateTest(sp.code, values);
    else if (sp && sp.type === 'uri' && !k.modifier) {
      const uris = new Set(values.map(unescape));
      test = (c) => c.indexes.uris.some((r) => r.name === sp.code && !r.missing && r.uri !== null && uris.has(r.uri));
    }
    if (test) out.tests.push(test);
    else out.deferred.push([key, raw]);
  }
  return out;
}

/** Token values as hfj_spidx_token matches them: `code`, `system|code`, `|code`, `system|`. */
function tokenTest(name: string, values: string[]): { test: Test; keys: string[] | undefined } {
  const parts = values.map((v) => {
    const p = splitBar(v);
    if (p.length > 2) throw new Error(`The token "${v}" of ${name} has more than one "|".`);
    return p;
  });
  const one = (sys: string | null, val: string | null, p: string[]): boolean => {
    if (p.length === 1) return val === p[0];
    if (p[0] === '') return sys === null && val === p[1];
    if (p[1] === '') return sys === p[0];
    return sys === p[0] && val === p[1];
  };
  const test: Test = (c) => c.indexes.tokens.some((r) => r.name === name && !r.missing && parts.some((p) => one(r.system, r.value, p)));
  // Keys when every value names its code (a system alone, `system|`, names none).
  const keys = parts.every((p) => p.length === 1 || p[1] !== '')
    ? parts.map((p) =>
        p.length === 1 ? tokenKeys(name, null, p[0])[1] : p[0] === '' ? tokenKeys(name, null, p[1])[1] : tokenKeys(name, p[0], p[1])[0],
      )
    : undefined;
  return { test, keys };
}

/** String values: a normalized prefix by default, :exact, :contains (src/search/params/string.ts). */
function stringTest(name: string, values: string[], modifier: string): Test {
  if (modifier === 'exact') {
    const exact = new Set(values);
    return (c) => c.indexes.strings.some((r) => r.name === name && !r.missing && r.valueExact !== null && exact.has(r.valueExact));
  }
  const wanted = values.map(normalizeString);
  const hit = modifier === 'contains' ? (s: string, w: string) => s.includes(w) : (s: string, w: string) => s.startsWith(w);
  return (c) =>
    c.indexes.strings.some((r) => r.name === name && !r.missing && r.valueNormalized !== null && wanted.some((w) => hit(r.valueNormalized!, w)));
}

const REF_RE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/;

/** Reference values over the resource's links (src/search/params/reference.ts): `id`, `Type/id`, an absolute URL. */
function referenceTest(sp: SearchParamInfo, values: string[], typeModifier: string, baseUrls: string[]): Test {
  const targets = sp.targets ?? [];
  const anyTarget = !targets.length || targets.includes('Resource');
  const matchers = values.map((raw): ((l: ResourceIndexes['links'][number]) => boolean) => {
    let ref = raw;
    for (const b of baseUrls) if (ref.startsWith(`${b}/`)) ref = ref.slice(b.length + 1);
    const m = REF_RE.exec(ref);
    if (m) {
      if (typeModifier && m[1] !== typeModifier) return () => false;
      return (l) => l.targetType === m[1] && l.targetId === m[2];
    }
    if (/^[a-z][a-z0-9+.-]*:/i.test(ref)) return (l) => l.targetUrl === ref;
    if (!/^[A-Za-z0-9\-.]{1,64}$/.test(ref)) throw new Error(`"${raw}" is not a reference: write an id, Type/id or an absolute URL.`);
    if (typeModifier) return (l) => l.targetId === ref && l.targetType === typeModifier;
    return (l) => l.targetId === ref && (anyTarget || (l.targetType !== null && targets.includes(l.targetType)));
  });
  const paths = new Set(sp.paths);
  return (c) => c.indexes.links.some((l) => paths.has(l.path) && matchers.some((f) => f(l)));
}

/** Date values against the stored ranges, by prefix, as rangeComparison in src/search/params/date.ts. */
function dateTest(name: string, values: string[]): Test {
  const ranges = values.map((raw) => {
    const { prefix, value } = prefixOf(raw);
    const r = parseDate(value, name);
    return { prefix, lo: r.low, hi: r.high };
  });
  return (c) => c.indexes.dates.some((d) => d.name === name && !d.missing && ranges.some((r) => compareRange(r.prefix, d.low, d.high, r.lo, r.hi)));
}

/** A stored range [low, high] (null: open) against a search range [lo, hi]. See: https://hl7.org/fhir/R4/search.html#prefix */
export function compareRange(prefix: Prefix, low: number | null, high: number | null, lo: number, hi: number): boolean {
  const L = low ?? -Infinity;
  const H = high ?? Infinity;
  const within = L >= lo && H <= hi;
  switch (prefix) {
    case 'eq':
      return within;
    case 'ne':
      return !within;
    case 'gt':
      return H > hi;
    case 'lt':
      return L < lo;
    case 'ge':
      return H > hi || within;
    case 'le':
      return L < lo || within;
    case 'sa':
      return low !== null && low > hi;
    case 'eb':
      return high !== null && high < lo;
    case 'ap': {
      const slack = Math.max(86_400_000, Math.abs(Date.now() - lo) * 0.1);
      return L <= hi + slack && H >= lo - slack;
    }
  }
}
