/**
 * Shared helpers of the search test files (search-*.test.ts): loading fixtures in one transaction,
 * running searches, and reading searchset Bundles.
 * See: https://hl7.org/fhir/R4/search.html
 */
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { Test } from 'tap';
import { injectWithin } from '../helper.ts';

/** Code systems the search suites share. */
export const LOINC = 'http://loinc.org';
export const SCT = 'http://snomed.info/sct';
export const UCUM = 'http://unitsofmeasure.org';
export const COND_CAT = 'http://terminology.hl7.org/CodeSystem/condition-category';

export type Json = Record<string, any>;

/** The BASE_URL the test apps run under (test/helper.ts). */
export const ORIGIN = 'http://tributary.test';
export const FHIR = '/fhir/r4';
export const FHIR_JSON = 'application/fhir+json';
const TIMEOUT_MS = 20_000;

export const send = (app: FastifyInstance, opts: InjectOptions, ms = TIMEOUT_MS): Promise<LightMyRequestResponse> => injectWithin(app, opts, ms);

/**
 * Stores resources (each with a client-chosen id) with one transaction of PUTs; throws on any
 * failure, so a broken fixture stops the file instead of failing every test obscurely.
 */
export async function upsertAll(app: FastifyInstance, resources: Json[]): Promise<Json> {
  const entry = resources.map((r) => {
    if (!r.id) throw new Error(`fixture ${r.resourceType} has no id`);
    return { fullUrl: `${ORIGIN}${FHIR}/${r.resourceType}/${r.id}`, resource: r, request: { method: 'PUT', url: `${r.resourceType}/${r.id}` } };
  });
  const res = await send(
    app,
    { method: 'POST', url: FHIR, headers: { 'content-type': FHIR_JSON }, payload: { resourceType: 'Bundle', type: 'transaction', entry } },
    60_000,
  );
  if (res.statusCode !== 200) throw new Error(`fixture transaction answered ${res.statusCode}: ${res.body.slice(0, 4000)}`);
  return res.json();
}

/** Percent-encodes a readable query (`a=b&c:d=e,f|g`): each key and value as a whole, splitting on `&` and the first `=`. */
export function encodeQuery(q: string): string {
  if (!q) return '';
  return q
    .split('&')
    .map((pair) => {
      const i = pair.indexOf('=');
      if (i < 0) return encodeURIComponent(pair);
      return `${encodeURIComponent(pair.slice(0, i))}=${encodeURIComponent(pair.slice(i + 1))}`;
    })
    .join('&');
}

/** `Type?readable query` → a URL under /fhir/r4 with the query encoded. */
export function url(pathAndQuery: string): string {
  const i = pathAndQuery.indexOf('?');
  if (i < 0) return `${FHIR}/${pathAndQuery}`.replace(/\/+$/, '');
  const path = pathAndQuery.slice(0, i);
  return `${FHIR}${path ? `/${path}` : ''}?${encodeQuery(pathAndQuery.slice(i + 1))}`;
}

/** A paging link (absolute, under BASE_URL) as an inject URL. */
export function rel(link: string): string {
  if (!link.startsWith(ORIGIN)) throw new Error(`link ${link} is not under ${ORIGIN}`);
  return link.slice(ORIGIN.length);
}

export const linkOf = (b: Json, relation: string): string | undefined => b?.link?.find((l: Json) => l.relation === relation)?.url;

export const entries = (b: Json): Json[] => (Array.isArray(b?.entry) ? b.entry : []);
export const matchEntries = (b: Json): Json[] => entries(b).filter((e) => e.search?.mode === 'match');
export const includeEntries = (b: Json): Json[] => entries(b).filter((e) => e.search?.mode === 'include');
export const outcomeEntries = (b: Json): Json[] => entries(b).filter((e) => e.search?.mode === 'outcome');

/** "Type/id" of an entry's resource. */
export const typedId = (e: Json): string => `${e.resource?.resourceType}/${e.resource?.id}`;
export const sorted = (xs: string[]): string[] => [...xs].sort();

export interface SearchResult {
  status: number;
  /** The first page. */
  bundle: Json;
  /** Ids of the matches (search.mode match) over every page, in order. */
  ids: string[];
  /** "Type/id" of the matches over every page, in order. */
  typed: string[];
  /** "Type/id" of the included resources over every page. */
  included: string[];
  body: string;
}

/** Runs a GET search and follows its next links (up to `maxPages`), collecting the matches. */
export async function searchAll(app: FastifyInstance, target: string, headers: Record<string, string> = {}, maxPages = 30): Promise<SearchResult> {
  const first = await send(app, { method: 'GET', url: target, headers });
  const out: SearchResult = { status: first.statusCode, bundle: {}, ids: [], typed: [], included: [], body: first.body };
  if (first.statusCode !== 200) return out;
  let bundle = first.json();
  out.bundle = bundle;
  for (let page = 0; ; page++) {
    for (const e of matchEntries(bundle)) {
      out.ids.push(e.resource?.id);
      out.typed.push(typedId(e));
    }
    for (const e of includeEntries(bundle)) out.included.push(typedId(e));
    const next = linkOf(bundle, 'next');
    if (!next || page >= maxPages) break;
    const res = await send(app, { method: 'GET', url: rel(next), headers });
    if (res.statusCode !== 200) {
      out.status = res.statusCode;
      out.body = res.body;
      break;
    }
    bundle = res.json();
  }
  return out;
}

export interface Row {
  /** A readable search: `Type?param=value&...` (encoded by url()). */
  q: string;
  /** The ids (or "Type/id" when `typed`) of exactly the matches, any order unless `ordered`. */
  ids: string[];
  /** Why, when the expectation is not obvious. */
  why?: string;
  ordered?: boolean;
  typed?: boolean;
}

/** One subtest per row: the search answers 200 with exactly the expected matches. */
export function runTable(t: Test, app: FastifyInstance, title: string, rows: Row[]): void {
  t.test(title, async (t) => {
    for (const row of rows) {
      const name = `${row.q} → ${row.ordered ? '' : '{'}${row.ids.join(', ')}${row.ordered ? '' : '}'}${row.why ? `  (${row.why})` : ''}`;
      t.test(name, async (t) => {
        const r = await searchAll(app, url(row.q));
        t.equal(r.status, 200, `status 200 (${r.body.slice(0, 300)})`);
        const got = row.typed ? r.typed : r.ids;
        if (row.ordered) t.same(got, row.ids, 'exactly these matches, in this order');
        else t.same(sorted(got), sorted(row.ids), 'exactly these matches');
      });
    }
  });
}
