/**
 * Imports endpoint lists into the directory (trb_system, trb_system_org): one system per distinct
 * base URL (trailing "/" trimmed, host lower-cased) with every organization it serves. An import
 * is one transaction: a file that cannot be read refuses the whole import, and what the directory
 * held before stays as it was. Re-importing the same lists changes nothing (a system whose content
 * is unchanged is not written). A row whose base is on a private, loopback or link-local address
 * or a local name (localhost, *.local, *.internal; src/net/outbound.ts privateHostReason) is
 * rejected with its reason, unless the operator's allow-list names it.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { inTransaction } from '../storage/transaction.ts';
import { yieldToOthers } from '../event-loop.ts';
import { stateOfZip } from './zip-states.ts';
import { readDirectoryFile, type DirectoryFormat, type DirectoryRow, type RejectedRow } from './readers.ts';
import { parseAllow, privateHostReason } from '../net/outbound.ts';
import * as sql from './sql.ts';

export interface ImportSource {
  /** A file name (for messages, the vendor and the format). */
  name: string;
  content: string;
  format?: DirectoryFormat;
  /** The EHR vendor of every row; by default from the file name (Lantern's `<Vendor>_EndpointSources.json`). */
  vendor?: string;
}

export interface ImportSummary {
  files: number;
  rows: number;
  systems: number;
  added: number;
  updated: number;
  unchanged: number;
  rejected: (RejectedRow & { file: string })[];
}

export type ImportProgress = (stage: 'read' | 'write', done: number, total: number) => void;

export interface ImportOptions {
  /** Hosts, host:port pairs and CIDR ranges whose bases are accepted although private (OUTBOUND_ALLOW). */
  allow?: readonly string[];
}

type Org = Omit<DirectoryRow, 'url' | 'at'> & { orgId: string | null };

interface System {
  id: string;
  normalized: string;
  url: string;
  name: string;
  vendor: string | null;
  fhirVersion: string | null;
  orgs: Org[];
  sha256: string;
}

/**
 * The base URL as given (trailing "/" trimmed) and its normalized form, lower-cased whole; a
 * string: why it is refused. Lower-casing the path too is deliberate: the lists name one endpoint
 * as both `/FHIR/R4` and `/fhir/r4` (29,117 distinct systems in the Lantern set this way, 29,161
 * with the host alone lower-cased).
 */
export function normalizeUrl(raw: string): { url: string; normalized: string } | string {
  // Two slips the published lists make are mended: stray characters before the scheme
  // (": https://...") and a host without a scheme ("beta.example.com/FHIRapi", taken as https).
  let url = raw
    .trim()
    .replace(/\/+$/, '')
    .replace(/^[^A-Za-z0-9]+(?=https?:\/\/)/i, '');
  if (!/^[a-z][a-z0-9+.-]*:/i.test(url) && /^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:\d+)?(\/|$)/.test(url)) url = `https://${url}`;
  if (url.length > 2000) return 'a URL longer than 2,000 characters';
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `not a URL: ${url.slice(0, 100)}`;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return `not an http(s) URL: ${url.slice(0, 100)}`;
  if (u.username || u.password) return 'a URL with credentials in it';
  return { url, normalized: url.toLowerCase() };
}

/** A short id that never changes for a URL: 48 bits of its SHA-256, in base 36 (at most 10 characters). */
export function systemId(normalized: string): string {
  return BigInt(`0x${createHash('sha256').update(normalized).digest('hex').slice(0, 12)}`).toString(36);
}

/**
 * The id of the FHIR Organization an organization row becomes: from its NPI when it has one, else
 * from its name and 5-digit zip (the same organization listed under several endpoints is one
 * Organization). null: nothing names it (no name, no NPI).
 */
export function orgId(o: Omit<DirectoryRow, 'url' | 'at'>): string | null {
  const name = foldText(o.orgName);
  if (!o.npi && !name) return null;
  return systemId(o.npi ? `npi:${o.npi}` : `name:${name}|${(o.postalCode ?? '').slice(0, 5)}`);
}

/** Text as searches compare it: accents removed, lower-cased, words split by single spaces. */
export function foldText(s: string): string {
  return s
    .normalize('NFD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim();
}

/** The FHIR version a URL shows (`.../DSTU2/...`, `.../R4`), or null. */
export function fhirVersionOf(url: string): string | null {
  const m = /\/(dstu2|stu3|r4|r4b|r5)(?=\/|$|\?)/i.exec(url);
  return m ? m[1].toUpperCase() : null;
}

/** The vendor of a Lantern file: `Altera_Digital_Health_Inc_EndpointSources.json` → "Altera Digital Health Inc". */
export function vendorFromFileName(name: string): string | null {
  const base = name.split(/[\\/]/).pop()!;
  const m = /^(.+?)(?:_\d+)?_?EndpointSources\.json$/i.exec(base);
  if (!m) return null;
  return m[1] === '1Up' ? '1upHealth' : m[1].replace(/_/g, ' ');
}

/** Rows grouped by normalized URL, organizations de-duplicated; the first vendor seen wins. */
async function group(
  rows: { row: DirectoryRow; vendor: string | null; file: string }[],
  rejected: ImportSummary['rejected'],
  allowList: readonly string[],
): Promise<System[]> {
  const allow = parseAllow(allowList);
  const systems = new Map<string, Omit<System, 'sha256' | 'name'> & { orgKeys: Set<string> }>();
  for (const [i, { row, vendor, file }] of rows.entries()) {
    if (i % 5000 === 4999) await yieldToOthers();
    const n = normalizeUrl(row.url);
    const why = typeof n === 'string' ? n : privateHostReason(new URL(n.url), allow);
    if (typeof n === 'string' || why) {
      rejected.push({ file, at: row.at, reason: why! });
      continue;
    }
    let s = systems.get(n.normalized);
    if (!s)
      systems.set(
        n.normalized,
        (s = {
          id: row.systemId ?? systemId(n.normalized),
          normalized: n.normalized,
          url: n.url,
          vendor,
          fhirVersion: fhirVersionOf(n.url),
          orgs: [],
          orgKeys: new Set(),
        }),
      );
    const { url: _url, at: _at, systemId: _id, ...fields } = row;
    const key = JSON.stringify(fields);
    if (!s.orgKeys.has(key) && (fields.orgName || fields.npi || fields.postalCode)) {
      s.orgKeys.add(key);
      // Lantern gives a zip but no state: the zip's prefix tells it.
      s.orgs.push({ ...fields, state: fields.state ?? stateOfZip(fields.postalCode), orgId: orgId(fields) });
    }
  }
  return [...systems.values()].map(({ orgKeys: _k, ...s }) => {
    const name = s.orgs.find((o) => o.orgName)?.orgName ?? new URL(s.url).host;
    const sha256 = createHash('sha256')
      .update(JSON.stringify([s.url, name, s.vendor, s.fhirVersion, s.orgs]))
      .digest('hex');
    return { ...s, name, sha256 };
  });
}

const CHUNK = 5000;

export async function importDirectory(
  pool: pg.Pool,
  sources: ImportSource[],
  progress?: ImportProgress,
  options: ImportOptions = {},
): Promise<ImportSummary> {
  const rows: { row: DirectoryRow; vendor: string | null; file: string }[] = [];
  const summary: ImportSummary = { files: sources.length, rows: 0, systems: 0, added: 0, updated: 0, unchanged: 0, rejected: [] };
  for (const [i, src] of sources.entries()) {
    const read = readDirectoryFile(src.name, src.content, src.format);
    const vendor = src.vendor ?? vendorFromFileName(src.name);
    for (const row of read.rows) rows.push({ row, vendor, file: src.name });
    summary.rejected.push(...read.rejected.map((r) => ({ ...r, file: src.name })));
    progress?.('read', i + 1, sources.length);
    await yieldToOthers();
  }
  summary.rows = rows.length + summary.rejected.length;
  const systems = await group(rows, summary.rejected, options.allow ?? []);
  summary.systems = systems.length;

  await inTransaction(pool, async (c) => {
    for (let start = 0; start < systems.length; start += CHUNK) {
      const part = systems.slice(start, start + CHUNK);
      const { rows: written } = await c.query<{ id: string; inserted: boolean }>(
        sql.upsertSystems({
          ids: part.map((s) => s.id),
          normalized: part.map((s) => s.normalized),
          urls: part.map((s) => s.url),
          names: part.map((s) => s.name),
          vendors: part.map((s) => s.vendor),
          fhirVersions: part.map((s) => s.fhirVersion),
          sha256s: part.map((s) => s.sha256),
        }),
      );
      const changed = new Set(written.map((w) => w.id));
      summary.added += written.filter((w) => w.inserted).length;
      summary.updated += written.filter((w) => !w.inserted).length;
      const orgs = part.filter((s) => changed.has(s.id)).flatMap((s) => s.orgs.map((o, ord) => ({ id: s.id, ord, o })));
      await c.query(sql.deleteSystemOrgs([...changed]));
      await c.query(
        sql.insertSystemOrgs({
          systemIds: orgs.map((x) => x.id),
          ords: orgs.map((x) => x.ord),
          names: orgs.map((x) => x.o.orgName),
          npis: orgs.map((x) => x.o.npi),
          lines: orgs.map((x) => x.o.line),
          cities: orgs.map((x) => x.o.city),
          states: orgs.map((x) => x.o.state),
          postalCodes: orgs.map((x) => x.o.postalCode),
          orgIds: orgs.map((x) => x.o.orgId),
        }),
      );
      progress?.('write', Math.min(start + CHUNK, systems.length), systems.length);
    }
    // Searches rebuild their index of the directory when they see a new version.
    if (summary.added || summary.updated) await c.query(sql.bumpVersion());
  });
  summary.unchanged = summary.systems - summary.added - summary.updated;
  return summary;
}
