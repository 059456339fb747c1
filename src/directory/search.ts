/**
 * Directory search: words of a name, city or address (case and accent insensitive, each word a
 * prefix of a word of the system), narrowed by zip, state, NPI, vendor, FHIR version or URL, and
 * ranked by how well the name matches. When the words match nothing, a typo-tolerant pass
 * (pg_trgm word similarity) answers instead.
 */
import type pg from 'pg';
import { foldText } from './importer.ts';
import { likeEscape } from '../storage/sql.ts';

export interface SystemQuery {
  text?: string;
  zip?: string;
  state?: string;
  npi?: string;
  vendor?: string;
  fhirVersion?: string;
  /** A URL or a domain, matched anywhere in the base URL. */
  url?: string;
  offset: number;
  limit: number;
}

export interface Location {
  name: string;
  address: { line: string | null; city: string | null; postalCode: string | null; state: string | null };
}

export interface SystemHit {
  id: string;
  name: string;
  resourceUrl: string;
  vendor: string | null;
  fhirVersion: string | null;
  status: string;
  locations: Location[];
}

/** Locations shown per system (a URL may serve hundreds of organizations). */
const MAX_LOCATIONS = 20;
const MAX_WORDS = 8;


/** The SELECT of one pass: the words as word prefixes, or (typo) by word similarity. */
function statement(q: SystemQuery, folded: string, typo: boolean): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const p = (v: unknown) => {
    values.push(v);
    return `$${values.length}`;
  };
  const conds: string[] = [];
  const org = (cond: string) => conds.push(`EXISTS (SELECT 1 FROM trb_system_org o WHERE o.system_id = s.id AND ${cond})`);
  if (q.zip) org(`o.postal_code LIKE ${p(`${likeEscape(q.zip.trim())}%`)}`);
  if (q.state) org(`upper(o.state) = ${p(q.state.trim().toUpperCase())}`);
  if (q.npi) org(`o.npi = ${p(q.npi.trim())}`);
  if (q.vendor) conds.push(`s.vendor ILIKE ${p(`%${likeEscape(q.vendor.trim())}%`)}`);
  if (q.fhirVersion) conds.push(`s.fhir_version = ${p(q.fhirVersion.trim().toUpperCase())}`);
  if (q.url) conds.push(`s.url_normalized LIKE ${p(`%${likeEscape(q.url.trim().toLowerCase().replace(/^https?:\/\//, '').replace(/\/+$/, ''))}%`)}`);
  let order = 'length(s.name), s.id';
  if (folded && typo) {
    const f = p(folded);
    conds.push(`${f} <% s.search_text`);
    order = `word_similarity(${f}, s.search_text) DESC, ${order}`;
  } else if (folded) {
    // Each word: somewhere in the text (the trigram index finds it), at the start of a word.
    for (const w of folded.split(' ').slice(0, MAX_WORDS)) {
      const pat = p(likeEscape(w));
      conds.push(`s.search_text LIKE '%' || ${pat} || '%' AND (' ' || s.search_text) LIKE '% ' || ${pat} || '%'`);
    }
    order = `similarity(lower(s.name), ${p(folded)}) DESC, ${order}`;
  }
  return {
    text: `SELECT s.id, s.name, s.resource_url, s.vendor, s.fhir_version, s.status FROM trb_system s
      ${conds.length ? `WHERE ${conds.join(' AND ')}` : ''} ORDER BY ${order} OFFSET ${Math.trunc(q.offset)} LIMIT ${Math.trunc(q.limit)}`,
    values,
  };
}

type Row = { id: string; name: string; resource_url: string; vendor: string | null; fhir_version: string | null; status: string };

export async function searchSystems(pool: pg.Pool, q: SystemQuery): Promise<SystemHit[]> {
  const folded = foldText(q.text ?? '');
  let { rows } = await pool.query<Row>(statement(q, folded, false));
  // Nothing for the words as typed: perhaps a typo (the first page only; later pages follow it).
  if (!rows.length && folded && q.offset === 0) rows = (await pool.query<Row>(statement(q, folded, true))).rows;
  if (!rows.length) return [];
  const orgs = await pool.query<{ system_id: string; name: string; line: string | null; city: string | null; state: string | null; postal_code: string | null }>(
    `SELECT system_id, name, line, city, state, postal_code FROM trb_system_org WHERE system_id = ANY($1::text[]) AND ord < ${MAX_LOCATIONS} ORDER BY system_id, ord`,
    [rows.map((r) => r.id)],
  );
  const bySystem = new Map<string, Location[]>();
  for (const o of orgs.rows) {
    const list = bySystem.get(o.system_id) ?? [];
    list.push({ name: o.name, address: { line: o.line, city: o.city, postalCode: o.postal_code, state: o.state } });
    bySystem.set(o.system_id, list);
  }
  return rows.map((r) => ({ id: r.id, name: r.name, resourceUrl: r.resource_url, vendor: r.vendor, fhirVersion: r.fhir_version, status: r.status, locations: bySystem.get(r.id) ?? [] }));
}
