/**
 * The directory's fixed statements (trb_system, trb_system_org, trb_directory_import,
 * trb_directory_state), as small functions returning { text, values }.
 */
import type { Sql } from '../storage/sql.ts';

/** Locations shown per system (a URL may serve hundreds of organizations). */
export const MAX_LOCATIONS = 20;
/** The tables the FHIR view writes to, analyzed after a bulk load. */
const VIEW_TABLES = ['hfj_resource', 'hfj_res_ver', 'hfj_spidx_string', 'hfj_spidx_token', 'hfj_spidx_uri', 'hfj_res_link'];

/** A transaction-scoped advisory lock (`key`: a constant of the caller's). */
export const advisoryLock = (key: number): Sql => ({ text: 'SELECT pg_advisory_xact_lock($1)', values: [key] });

// The first-start import of the shipped lists (src/directory/autoload.ts).

/** When an import of exactly these shipped files was recorded (no row: never). */
export const shippedImport = (sha256: string): Sql => ({
  text: "SELECT imported_at AS at FROM trb_directory_import WHERE source = 'shipped' AND content_sha256 = $1 LIMIT 1",
  values: [sha256],
});

export interface ImportCounts {
  files: number;
  systems: number;
  added: number;
  updated: number;
  rejected: number;
}

export const recordShippedImport = (sha256: string, s: ImportCounts): Sql => ({
  text: /* SQL */ `INSERT INTO trb_directory_import (source, content_sha256, files, systems, added, updated, rejected_rows)
         VALUES ('shipped', $1, $2, $3, $4, $5, $6)`,
  values: [sha256, s.files, s.systems, s.added, s.updated, s.rejected],
});

// The importer (src/directory/importer.ts): one statement per table per chunk, one array per column.

export interface SystemColumns {
  ids: string[];
  normalized: string[];
  urls: string[];
  names: string[];
  vendors: (string | null)[];
  fhirVersions: (string | null)[];
  sha256s: string[];
}

/** Systems added or changed (an unchanged one is not written); answers the rows written and whether each is new. */
export const upsertSystems = (s: SystemColumns): Sql => ({
  text: /* SQL */ `INSERT INTO trb_system (id, url_normalized, resource_url, name, vendor, fhir_version, content_sha256)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
         ON CONFLICT (id) DO UPDATE SET resource_url = EXCLUDED.resource_url, name = EXCLUDED.name, vendor = EXCLUDED.vendor,
           fhir_version = EXCLUDED.fhir_version, content_sha256 = EXCLUDED.content_sha256, updated_at = now()
         WHERE trb_system.content_sha256 IS DISTINCT FROM EXCLUDED.content_sha256 AND trb_system.url_normalized = EXCLUDED.url_normalized
         RETURNING id, (xmax = 0) AS inserted`,
  values: [s.ids, s.normalized, s.urls, s.names, s.vendors, s.fhirVersions, s.sha256s],
});

export const deleteSystemOrgs = (systemIds: string[]): Sql => ({
  text: 'DELETE FROM trb_system_org WHERE system_id = ANY($1::text[])',
  values: [systemIds],
});

export interface OrgColumns {
  systemIds: string[];
  ords: number[];
  names: string[];
  npis: (string | null)[];
  lines: (string | null)[];
  cities: (string | null)[];
  states: (string | null)[];
  postalCodes: (string | null)[];
  orgIds: (string | null)[];
}

export const insertSystemOrgs = (o: OrgColumns): Sql => ({
  text: /* SQL */ `INSERT INTO trb_system_org (system_id, ord, name, npi, line, city, state, postal_code, org_id)
         SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])`,
  values: [o.systemIds, o.ords, o.names, o.npis, o.lines, o.cities, o.states, o.postalCodes, o.orgIds],
});

/** Searches rebuild their index of the directory when they see a new version. */
export const bumpVersion = (): Sql => ({ text: 'UPDATE trb_directory_state SET version = version + 1', values: [] });

// The search (src/directory/search.ts, src/directory/search-index.ts).

export const directoryVersion = (): Sql => ({ text: 'SELECT version::text FROM trb_directory_state', values: [] });

/** Every system with its organizations as [name, city, state, postal_code, npi, line] tuples, in order. */
export const systemsToIndex = (): Sql => ({
  text: /* SQL */ `SELECT s.id, s.name, s.url_normalized, s.vendor, s.fhir_version,
         coalesce(json_agg(json_build_array(o.name, o.city, o.state, o.postal_code, o.npi, o.line) ORDER BY o.ord) FILTER (WHERE o.system_id IS NOT NULL), '[]') AS orgs
       FROM trb_system s LEFT JOIN trb_system_org o ON o.system_id = s.id
       GROUP BY s.id`,
  values: [],
});

export const systemsById = (ids: string[]): Sql => ({
  text: 'SELECT id, name, resource_url, vendor, fhir_version, status FROM trb_system WHERE id = ANY($1::text[])',
  values: [ids],
});

/** The first MAX_LOCATIONS organizations of each system. */
export const locationsOf = (ids: string[]): Sql => ({
  text: `SELECT system_id, name, line, city, state, postal_code FROM trb_system_org WHERE system_id = ANY($1::text[]) AND ord < ${MAX_LOCATIONS} ORDER BY system_id, ord`,
  values: [ids],
});

// The status probe (src/directory/probe.ts).

/** The systems to probe (all when `ids` is null), those checked longest ago first. */
export const systemsToProbe = (ids: string[] | null): Sql => ({
  text: 'SELECT id, resource_url FROM trb_system WHERE $1::text[] IS NULL OR id = ANY($1::text[]) ORDER BY checked_at NULLS FIRST, id',
  values: [ids],
});

/** A status that changed puts the system's Endpoint (its status) back in the FHIR view's queue. */
export const recordStatus = (id: string, status: string): Sql => ({
  text: `UPDATE trb_system SET status = $2, checked_at = now(), fhir_sha256 = CASE WHEN status = $2 THEN fhir_sha256 END WHERE id = $1`,
  values: [id, status],
});

// The FHIR view (src/directory/fhir-view.ts).

export const pendingViewCount = (): Sql => ({
  text: 'SELECT count(*)::int AS n FROM trb_system WHERE fhir_sha256 IS DISTINCT FROM content_sha256',
  values: [],
});

/** Up to `limit` systems whose content changed since the view wrote them, with their first organization. */
export const pendingViewSystems = (limit: number): Sql => ({
  text: /* SQL */ `SELECT s.id, s.resource_url, s.name, s.vendor, s.fhir_version, s.status, s.content_sha256, m.org_id AS managing_org, m.name AS managing_name
     FROM trb_system s
     LEFT JOIN LATERAL (SELECT o.org_id, o.name FROM trb_system_org o WHERE o.system_id = s.id AND o.org_id IS NOT NULL ORDER BY o.ord LIMIT 1) m ON true
     WHERE s.fhir_sha256 IS DISTINCT FROM s.content_sha256
     ORDER BY s.id LIMIT $1`,
  values: [limit],
});

/** The Organizations these systems serve now, and those whose Endpoint list named one of them before. */
export const affectedOrgRows = (systemIds: string[], partitionId: number | null): Sql => ({
  text: /* SQL */ `WITH affected AS (
       SELECT org_id FROM trb_system_org WHERE system_id = ANY($1::text[]) AND org_id IS NOT NULL
       UNION
       SELECT r.fhir_id FROM hfj_res_link l JOIN hfj_resource r ON r.res_id = l.src_resource_id
       WHERE l.target_fhir_id = ANY($1::text[]) AND l.target_resource_type = 'Endpoint' AND l.src_path = 'Organization.endpoint' AND r.partition_id = $2
     )
     SELECT a.org_id, o.name, o.npi, o.line, o.city, o.state, o.postal_code, o.system_id, s.name AS system_name
     FROM affected a
     LEFT JOIN trb_system_org o ON o.org_id = a.org_id
     LEFT JOIN trb_system s ON s.id = o.system_id
     ORDER BY a.org_id, o.system_id, o.ord`,
  values: [systemIds, partitionId],
});

export const markViewWritten = (ids: string[], sha256s: string[]): Sql => ({
  text: `UPDATE trb_system s SET fhir_sha256 = u.sha FROM unnest($1::text[], $2::text[]) AS u(id, sha) WHERE s.id = u.id`,
  values: [ids, sha256s],
});

export const analyzeViewTables = (): Sql => ({ text: `ANALYZE ${VIEW_TABLES.join(', ')}`, values: [] });
