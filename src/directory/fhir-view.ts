/**
 * The directory as FHIR resources, in the partition every app reads (DIRECTORY_SCOPE): an Endpoint
 * per system (its id is the system's id) and an Organization per distinct organization (its id is
 * the rows' org_id), linked both ways as ONC's HTI-1 service-base-URL lists link them
 * (Organization.endpoint, Endpoint.managingOrganization).
 *
 * The view follows the tables. A system whose content changed since the view last wrote it
 * (`fhir_sha256` ≠ `content_sha256`) is written again, with every Organization it serves or
 * served. So the view catches up after any import, whether it was interrupted or not. Work goes in
 * chunks, one transaction each, under an advisory lock, so that several processes can share it
 * without racing.
 */
import type pg from 'pg';
import type { Endpoint, Organization, Resource } from '@medplum/fhirtypes';
import { DIRECTORY_SCOPE, type ResourceIndexer } from '../fhir/ports.ts';
import type { Repository } from '../storage/repository.ts';
import { inTransaction } from '../storage/transaction.ts';
import { writeResources, type Wanted } from '../fhir/bulk.ts';
import * as sql from './sql.ts';

/** The identifier system of a system's directory id (the id `/connect/system/clinical/{id}` takes). */
export const HEALTH_SYSTEM_ID = 'https://tributary.dev/fhir/sid/health-system';
/** The extension that carries the FHIR version a URL shows (DSTU2, STU3, R4). */
export const FHIR_VERSION_EXTENSION = 'https://tributary.dev/fhir/StructureDefinition/fhir-version';
/** The extension that names the EHR vendor whose list the system came from. */
export const EHR_VENDOR_EXTENSION = 'https://tributary.dev/fhir/StructureDefinition/ehr-vendor';
const NPI = 'http://hl7.org/fhir/sid/us-npi';
/** Systems per transaction. */
const CHUNK = 2000;
/** Addresses and aliases kept per Organization (an NPI may be listed under many addresses). */
const MAX_PER_ORG = 20;
const VIEW_LOCK = 0x7472_6476_6965; // any constant
/** Resources written in one run past which the tables they went to are analyzed. */
const ANALYZE_AFTER = 10_000;

export interface ViewDeps {
  pool: pg.Pool;
  repo: Repository;
  indexer: ResourceIndexer;
}

export interface ViewSummary {
  systems: number;
  /** Resources written with a new version (created, changed or deleted). */
  written: number;
  unchanged: number;
}

interface SystemRow {
  id: string;
  resource_url: string;
  name: string;
  vendor: string | null;
  fhir_version: string | null;
  status: string;
  content_sha256: string;
  managing_org: string | null;
  managing_name: string | null;
}

interface OrgRow {
  org_id: string;
  name: string;
  npi: string | null;
  line: string | null;
  city: string | null;
  state: string | null;
  postal_code: string | null;
  system_id: string;
  system_name: string;
}

function endpointOf(s: SystemRow): Endpoint {
  const extension = [
    ...(s.fhir_version ? [{ url: FHIR_VERSION_EXTENSION, valueCode: s.fhir_version }] : []),
    ...(s.vendor ? [{ url: EHR_VENDOR_EXTENSION, valueString: s.vendor }] : []),
  ];
  return {
    resourceType: 'Endpoint',
    id: s.id,
    ...(extension.length ? { extension } : {}),
    identifier: [{ system: HEALTH_SYSTEM_ID, value: s.id }],
    // The probe's verdict: a base URL that does not answer is in error; otherwise it is listed as active.
    status: s.status === 'unreachable' ? 'error' : 'active',
    connectionType: { system: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type', code: 'hl7-fhir-rest', display: 'HL7 FHIR' },
    name: s.name,
    ...(s.managing_org ? { managingOrganization: { reference: `Organization/${s.managing_org}`, display: s.managing_name ?? undefined } } : {}),
    payloadType: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/endpoint-payload-type', code: 'any', display: 'Any' }] }],
    payloadMimeType: ['application/fhir+json'],
    address: s.resource_url,
  };
}

/** One Organization from every row that names it (the first row gives its name and NPI). */
function organizationOf(id: string, rows: OrgRow[]): Organization {
  const first = rows[0];
  const unique = <T>(items: T[], key: (t: T) => string) => [...new Map(items.map((i) => [key(i), i])).values()].slice(0, MAX_PER_ORG);
  const addresses = unique(
    rows.filter((r) => r.line || r.city || r.state || r.postal_code),
    (r) => JSON.stringify([r.line, r.city, r.state, r.postal_code]),
  ).map((r) => ({
    ...(r.line ? { line: [r.line] } : {}),
    ...(r.city ? { city: r.city } : {}),
    ...(r.state ? { state: r.state } : {}),
    ...(r.postal_code ? { postalCode: r.postal_code } : {}),
    country: 'US',
  }));
  const aliases = unique(
    rows.filter((r) => r.name && r.name !== first.name),
    (r) => r.name.toLowerCase(),
  ).map((r) => r.name);
  const endpoints = unique(rows, (r) => r.system_id).map((r) => ({ reference: `Endpoint/${r.system_id}`, display: r.system_name }));
  return {
    resourceType: 'Organization',
    id,
    ...(first.npi ? { identifier: [{ system: NPI, value: first.npi }] } : {}),
    active: true,
    type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/organization-type', code: 'prov', display: 'Healthcare Provider' }] }],
    ...(first.name ? { name: first.name } : {}),
    ...(aliases.length ? { alias: aliases } : {}),
    ...(addresses.length ? { address: addresses } : {}),
    endpoint: endpoints,
  };
}

/**
 * Brings the FHIR view up to date with the directory tables; `progress` hears systems done of those
 * pending. `stop` is asked between chunks: true ends the run early (the rest waits for the next).
 */
export async function syncFhirView(deps: ViewDeps, progress?: (done: number, total: number) => void, stop?: () => boolean): Promise<ViewSummary> {
  const summary: ViewSummary = { systems: 0, written: 0, unchanged: 0 };
  const { rows: pending } = await deps.pool.query<{ n: number }>(sql.pendingViewCount());
  const total = pending[0].n;
  if (total === 0) return summary;
  progress?.(0, total);
  while (!stop?.()) {
    const done = await inTransaction(deps.pool, (c) => viewChunk(deps, c, summary));
    if (done === 0) break;
    summary.systems += done;
    progress?.(Math.min(summary.systems, total), total);
  }
  // After a bulk load (a first import), the planner needs statistics that know the new rows before
  // autovacuum gets to them: without, it drives Organization?name= from all 40,000 Organizations.
  if (summary.written >= ANALYZE_AFTER) await deps.pool.query(sql.analyzeViewTables());
  return summary;
}

/** Writes one chunk of pending systems and their Organizations; answers how many systems it wrote. */
async function viewChunk(deps: ViewDeps, c: pg.PoolClient, summary: ViewSummary): Promise<number> {
  await c.query(sql.advisoryLock(VIEW_LOCK));
  const { rows: systems } = await c.query<SystemRow>(sql.pendingViewSystems(CHUNK));
  if (systems.length === 0) return 0;
  const ids = systems.map((s) => s.id);
  // The Organizations these systems serve now, and those whose Endpoint list named one of them before.
  const { rows: orgRows } = await c.query<OrgRow>(sql.affectedOrgRows(ids, DIRECTORY_SCOPE.partitionId));
  const orgs = new Map<string, OrgRow[]>();
  for (const r of orgRows) {
    let list = orgs.get(r.org_id);
    if (!list) orgs.set(r.org_id, (list = []));
    if (r.system_id !== null) list.push(r);
  }
  const wanted: Wanted[] = [
    ...systems.map((s) => ({ type: 'Endpoint', id: s.id, resource: endpointOf(s) as Resource })),
    // An Organization no system lists any more is deleted.
    ...[...orgs].map(([id, rows]) => ({ type: 'Organization', id, resource: rows.length ? (organizationOf(id, rows) as Resource) : null })),
  ];
  const { written, unchanged } = await writeResources(deps, c, DIRECTORY_SCOPE, wanted);
  summary.written += written;
  summary.unchanged += unchanged;
  await c.query(
    sql.markViewWritten(
      ids,
      systems.map((s) => s.content_sha256),
    ),
  );
  return systems.length;
}
