/**
 * A search's query string, parsed: its criteria, and the result parameters (`_count`, `_sort`,
 * `_include`, `_revinclude`, `_total`, `_summary`, `_elements`) and paging links (`_page`,
 * `_snapshot`, `_offset`) that shape the answer.
 * See: https://hl7.org/fhir/R4/search.html#return
 */
import type { OperationOutcomeIssue } from '@medplum/fhirtypes';
import { badRequest } from '../fhir/errors.ts';
import type { SearchParamLookup } from '../fhir/ports.ts';
import { isResourceType } from '../fhir/resource-type.ts';
import { parseElements, parseSummary, type SummaryMode } from '../fhir/summary.ts';
import { DEFAULT_COUNT, MAX_COUNT, MAX_CRITERIA, MAX_INCLUDE_PARAMS, MAX_SORT_KEYS, SNAPSHOT_CAP } from './limits.ts';
import { COMMON_PARAMS, CONTROL_PARAMS, paramCode } from './params/key.ts';
import { splitOr, unescape } from './values.ts';

/** Parameters the server recognises but does not support: ignored, with a warning. */
const UNSUPPORTED = new Set(['_text', '_content', '_list', '_query', '_filter', '_containedType', '_contained', '_score']);

export interface IncludeSpec {
  sourceType: string;
  /** null for the wildcard `*`. */
  param: string | null;
  targetType: string | null;
  iterate: boolean;
}

export interface SortKey {
  code: string;
  desc: boolean;
}

export interface Parsed {
  criteria: [string, string][];
  count: number;
  sort: SortKey[];
  include: IncludeSpec[];
  revinclude: IncludeSpec[];
  total: 'none' | 'estimate' | 'accurate' | undefined;
  summary: SummaryMode | undefined;
  elements: string[] | undefined;
  /** A later page: after or before a res_id, among the resources created by asOf (epoch ms). */
  page: { after?: string; before?: string; asOf: number; total?: number } | undefined;
  snapshot: { id: string; offset: number } | undefined;
  /** `_dedup=merged`: the de-duplicated view (src/dedup): a person's duplicates as one resource. */
  dedup: boolean;
  warnings: OperationOutcomeIssue[];
}

export const warning = (diagnostics: string): OperationOutcomeIssue => ({ severity: 'warning', code: 'not-supported', diagnostics });

function intParam(v: string, name: string, max: number): number {
  if (!/^\d{1,9}$/.test(v)) throw badRequest(`${name} must be a whole number of 0 or more; it is "${v.slice(0, 50)}".`);
  return Math.min(Number(v), max);
}

/** Whether `code` names a search parameter of `type` (or of every type). */
export function known(params: SearchParamLookup, type: string | null, key: string): boolean {
  const code = paramCode(key);
  if ((COMMON_PARAMS as readonly string[]).includes(code)) return true;
  return type !== null && params.get(type, code) !== undefined;
}

export function parseQuery(params: SearchParamLookup, types: string[] | null, query: URLSearchParams, strict: boolean): Parsed {
  const p: Parsed = {
    criteria: [],
    count: DEFAULT_COUNT,
    sort: [],
    include: [],
    revinclude: [],
    total: undefined,
    summary: undefined,
    elements: undefined,
    page: undefined,
    snapshot: undefined,
    dedup: false,
    warnings: [],
  };
  const once = new Set<string>();
  const single = (key: string) => {
    if (once.has(key)) throw badRequest(`${key} may be given once.`);
    once.add(key);
  };
  for (const [key, value] of query) {
    // A repeated result parameter: the last one counts (as the earlier ones are overridden).
    if (key === '_count') {
      p.count = intParam(value, '_count', MAX_COUNT);
    } else if (key === '_sort') {
      p.sort = value
        .split(',')
        .filter(Boolean)
        .map((s) => ({ code: s.replace(/^-/, ''), desc: s.startsWith('-') }));
    } else if (key === '_total') {
      if (value !== 'none' && value !== 'estimate' && value !== 'accurate')
        throw badRequest(`_total must be none, estimate or accurate; it is "${value.slice(0, 50)}".`);
      p.total = value;
    } else if (key === '_summary') {
      p.summary = parseSummary(value);
    } else if (key === '_elements') {
      p.elements = parseElements(value);
    } else if (key === '_include' || key === '_revinclude' || /^_(rev)?include:(iterate|recurse)$/.test(key)) {
      const rev = key.startsWith('_revinclude');
      const spec = parseInclude(params, value, key.includes(':'), rev);
      (rev ? p.revinclude : p.include).push(spec);
    } else if (key === '_page') {
      single(key);
      const m = /^([ab])(\d{1,19})\.(\d{1,15})(?:\.(\d{1,9}))?$/.exec(value);
      if (!m) throw badRequest(`_page "${value.slice(0, 50)}" is not a page of this server; follow the Bundle's next and previous links as given.`);
      p.page = { [m[1] === 'a' ? 'after' : 'before']: m[2], asOf: Number(m[3]), total: m[4] === undefined ? undefined : Number(m[4]) };
    } else if (key === '_snapshot') {
      single(key);
      if (!/^[0-9a-f-]{36}$/.test(value)) throw badRequest(`_snapshot "${value.slice(0, 50)}" is not a search of this server.`);
      p.snapshot = { id: value, offset: 0 };
    } else if (key === '_offset') {
      single(key);
      (p.snapshot ??= { id: '', offset: 0 }).offset = intParam(value, '_offset', SNAPSHOT_CAP);
    } else if (key === '_dedup') {
      single(key);
      if (value !== 'merged' && value !== 'none')
        throw badRequest(`_dedup is merged (one resource for a person's duplicates) or none; it is "${value.slice(0, 50)}".`);
      p.dedup = value === 'merged';
    } else if (CONTROL_PARAMS.has(key)) {
      // _format, _pretty: the HTTP layer's; _type: the caller's
    } else {
      const code = paramCode(key);
      const knownSomewhere = types === null ? known(params, null, key) : types.every((t) => known(params, t, key));
      if (UNSUPPORTED.has(code) || !knownSomewhere) {
        const msg = UNSUPPORTED.has(code)
          ? `The parameter ${code} is not supported; it was ignored.`
          : `${types?.length === 1 ? types[0] : types ? types.join(', ') : 'A search across all types'} has no search parameter "${code.slice(0, 100)}"; it was ignored.`;
        if (strict) throw badRequest(msg.replace('; it was ignored.', '.'));
        p.warnings.push(warning(msg));
        continue;
      }
      p.criteria.push([key, value]);
    }
  }
  if (p.criteria.length > MAX_CRITERIA) throw badRequest(`A search takes at most ${MAX_CRITERIA} parameters; this one has ${p.criteria.length}.`);
  if (p.include.length + p.revinclude.length > MAX_INCLUDE_PARAMS)
    throw badRequest(`A search takes at most ${MAX_INCLUDE_PARAMS} _include and _revinclude parameters.`);
  if (p.sort.length > MAX_SORT_KEYS) throw badRequest(`_sort takes at most ${MAX_SORT_KEYS} keys.`);
  if (p.snapshot && !p.snapshot.id) throw badRequest("_offset pages only a sorted search; follow the Bundle's next and previous links as given.");
  return p;
}

function parseInclude(params: SearchParamLookup, value: string, iterate: boolean, rev: boolean): IncludeSpec {
  const parts = value.split(':');
  const what = rev ? '_revinclude' : '_include';
  if (value === '*') return { sourceType: '*', param: null, targetType: null, iterate };
  if (parts.length < 2 || parts.length > 3) throw badRequest(`${what}=${value.slice(0, 100)} is not Type:parameter[:targetType].`);
  const [sourceType, param, targetType] = parts;
  if (!isResourceType(sourceType)) throw badRequest(`${what}: "${sourceType.slice(0, 100)}" is not a resource type.`);
  if (targetType !== undefined && !isResourceType(targetType)) throw badRequest(`${what}: "${targetType.slice(0, 100)}" is not a resource type.`);
  if (param !== '*') {
    const sp = params.get(sourceType, param);
    if (!sp || sp.type !== 'reference') throw badRequest(`${what}: ${sourceType} has no reference parameter "${param.slice(0, 100)}".`);
  }
  return { sourceType, param: param === '*' ? null : param, targetType: targetType ?? null, iterate };
}

/** `_type=Patient,Observation` as a list of types, or a 400. */
export function parseTypes(value: string): string[] {
  const types = splitOr(value).map(unescape).filter(Boolean);
  for (const t of types) if (!isResourceType(t)) throw badRequest(`_type: "${t.slice(0, 100)}" is not a resource type.`);
  if (!types.length) throw badRequest('_type names no resource type.');
  return [...new Set(types)];
}
