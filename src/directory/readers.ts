/**
 * Readers of the endpoint lists EHR vendors publish, into rows of one shape. A row that cannot be
 * used is rejected with its reason; a file that cannot be read at all throws a DirectoryFileError
 * (and nothing of it is imported).
 * - `hti1`: the ONC HTI-1 "service base URL list", a FHIR R4 Bundle of Endpoint and Organization
 *   resources, each Organization naming its Endpoint(s) in Organization.endpoint.
 * - `lantern`: Lantern's `{"Endpoints": [{"URL", "OrganizationName", "NPIID", "OrganizationZipCode"}]}`.
 * - `csv`: a header line naming the columns url, name (or organization), npi, zip, and optionally
 *   address, city, state, and id (a fixed directory id for the system instead of the one derived
 *   from its URL), in any order.
 */

export type DirectoryFormat = 'hti1' | 'lantern' | 'csv';

export interface DirectoryRow {
  /** Where in the file: "Endpoints[12]", "entry[3]", "line 7". */
  at: string;
  url: string;
  orgName: string;
  npi: string | null;
  line: string | null;
  city: string | null;
  state: string | null;
  postalCode: string | null;
  /** A fixed directory id for the system (CSV's `id` column); absent: derived from the URL. */
  systemId?: string;
}

export interface RejectedRow {
  /** Where in the file: "Endpoints[12]", "entry[3]", "line 7". */
  at: string;
  reason: string;
}

export interface ReadResult {
  rows: DirectoryRow[];
  rejected: RejectedRow[];
}

export class DirectoryFileError extends Error {
  override name = 'DirectoryFileError';
}

const text = (v: unknown): string | null => (typeof v === 'string' && v.trim() !== '' ? v.trim() : null);

/** Which reader fits a file, from its name and first bytes. */
export function detectFormat(name: string, content: string): DirectoryFormat {
  if (/\.csv$/i.test(name)) return 'csv';
  const head = content.slice(0, 2000);
  if (/"resourceType"\s*:\s*"Bundle"/.test(head)) return 'hti1';
  if (/"Endpoints"\s*:/.test(head)) return 'lantern';
  throw new DirectoryFileError(`${name}: neither a FHIR Bundle (HTI-1), a Lantern list nor a .csv file; name the format with --format.`);
}

function parseJson(name: string, content: string): unknown {
  try {
    return JSON.parse(content);
  } catch (err) {
    throw new DirectoryFileError(`${name}: not JSON (${(err as Error).message.slice(0, 200)}).`);
  }
}

export function readDirectoryFile(name: string, content: string, format: DirectoryFormat = detectFormat(name, content)): ReadResult {
  if (format === 'csv') return readCsv(name, content);
  const json = parseJson(name, content);
  return format === 'hti1' ? readHti1(name, json) : readLantern(name, json);
}

function readLantern(name: string, json: unknown): ReadResult {
  const list = (json as { Endpoints?: unknown } | null)?.Endpoints;
  if (!Array.isArray(list)) throw new DirectoryFileError(`${name}: a Lantern list has an "Endpoints" array; this file has none.`);
  const out: ReadResult = { rows: [], rejected: [] };
  list.forEach((e, i) => {
    const at = `Endpoints[${i}]`;
    if (e === null || typeof e !== 'object') return out.rejected.push({ at, reason: 'not an object' });
    const r = e as Record<string, unknown>;
    const url = text(r.URL);
    if (!url) return out.rejected.push({ at, reason: 'no URL' });
    out.rows.push({
      at,
      url,
      orgName: text(r.OrganizationName) ?? '',
      npi: text(r.NPIID),
      line: null,
      city: null,
      state: null,
      postalCode: text(r.OrganizationZipCode),
    });
  });
  return out;
}

interface FhirRes {
  resourceType?: string;
  id?: string;
  address?: unknown;
  name?: unknown;
  identifier?: { system?: string; value?: string }[];
  endpoint?: { reference?: string }[];
}

function readHti1(name: string, json: unknown): ReadResult {
  const b = json as { resourceType?: string; entry?: unknown };
  if (b?.resourceType !== 'Bundle' || !Array.isArray(b.entry))
    throw new DirectoryFileError(`${name}: an HTI-1 list is a FHIR Bundle with entries; this file is not.`);
  const endpoints = new Map<string, string>();
  const orgs: { at: string; org: FhirRes }[] = [];
  const out: ReadResult = { rows: [], rejected: [] };
  b.entry.forEach((e, i) => {
    const res = (e as { resource?: FhirRes } | null)?.resource;
    if (res?.resourceType === 'Endpoint') {
      const address = text(res.address);
      if (!res.id || !address) out.rejected.push({ at: `entry[${i}]`, reason: 'an Endpoint without id or address' });
      else endpoints.set(res.id, address);
    } else if (res?.resourceType === 'Organization') orgs.push({ at: `entry[${i}]`, org: res });
  });
  const used = new Set<string>();
  for (const { at, org } of orgs) {
    const refs = (org.endpoint ?? []).map((r) => r.reference?.replace(/^Endpoint\//, '')).filter((x): x is string => !!x);
    if (!refs.length) {
      out.rejected.push({ at, reason: 'an Organization that names no Endpoint' });
      continue;
    }
    const addr = (Array.isArray(org.address) ? org.address[0] : undefined) as
      { line?: string[]; city?: string; state?: string; postalCode?: string } | undefined;
    const npi = org.identifier?.find((x) => x.system === 'http://hl7.org/fhir/sid/us-npi')?.value ?? null;
    for (const ref of refs) {
      const url = endpoints.get(ref);
      if (!url) {
        out.rejected.push({ at, reason: `Endpoint/${ref} is not in the Bundle` });
        continue;
      }
      used.add(ref);
      out.rows.push({
        at,
        url,
        orgName: text(org.name) ?? '',
        npi,
        line: text(addr?.line?.join(', ')),
        city: text(addr?.city),
        state: text(addr?.state),
        postalCode: text(addr?.postalCode),
      });
    }
  }
  // An Endpoint no Organization names is still a system (its name is then its host).
  for (const [id, url] of endpoints)
    if (!used.has(id)) out.rows.push({ at: `Endpoint/${id}`, url, orgName: '', npi: null, line: null, city: null, state: null, postalCode: null });
  return out;
}

/** RFC 4180 fields: commas, double-quoted fields with "" for a quote and line breaks inside. */
function csvRecords(content: string): string[][] {
  const records: string[][] = [];
  let field = '';
  let record: string[] = [];
  let quoted = false;
  for (let i = 0; i < content.length; i++) {
    const c = content[i];
    if (quoted) {
      if (c === '"' && content[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === ',') {
      record.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && content[i + 1] === '\n') i++;
      record.push(field);
      records.push(record);
      record = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || record.length) {
    record.push(field);
    records.push(record);
  }
  return records;
}

function readCsv(name: string, content: string): ReadResult {
  const records = csvRecords(content.replace(/^\uFEFF/, ''));
  const header = (records.shift() ?? []).map((h) => h.trim().toLowerCase());
  const col = (...names: string[]) => header.findIndex((h) => names.includes(h));
  const url = col('url', 'fhir_url', 'base_url', 'endpoint');
  if (url < 0) throw new DirectoryFileError(`${name}: the CSV header must name a "url" column; it is "${header.join(',').slice(0, 200)}".`);
  const [org, npi, zip] = [col('name', 'organization', 'organization_name'), col('npi'), col('zip', 'postal_code', 'zipcode')];
  const [line, city, state, id] = [col('address', 'line', 'street'), col('city'), col('state'), col('id', 'system_id')];
  const out: ReadResult = { rows: [], rejected: [] };
  records.forEach((r, i) => {
    if (r.length === 1 && r[0].trim() === '') return;
    const at = `line ${i + 2}`;
    const u = text(r[url]);
    if (!u) return out.rejected.push({ at, reason: 'no URL' });
    const fixed = text(r[id]);
    if (fixed && !/^[A-Za-z0-9-.]{1,64}$/.test(fixed))
      return out.rejected.push({ at, reason: `the id "${fixed.slice(0, 80)}" is not 1 to 64 letters, digits, "-" or "."` });
    out.rows.push({
      at,
      url: u,
      orgName: text(r[org]) ?? '',
      npi: text(r[npi]),
      line: text(r[line]),
      city: text(r[city]),
      state: text(r[state]),
      postalCode: text(r[zip]),
      ...(fixed ? { systemId: fixed } : {}),
    });
  });
  return out;
}
