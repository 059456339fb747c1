/**
 * Directory search: words of a name, city or address (case and accent insensitive, each word a
 * prefix of a word of the system), narrowed by zip, state, NPI, vendor, FHIR version or URL, and
 * ranked by how well the name matches. When the words match nothing, a typo-tolerant pass (each
 * word within one or two edits of a word of the directory) answers instead.
 *
 * The matching runs over an index in memory: 29,000 systems and their words take a few MB, and a
 * search is a few posting lists, where SQL had to read the text of every system that shares a
 * common word ("health": 12,000 of them). The index is a cache of the tables: a version row that
 * every import bumps in its transaction (trb_directory_state) says when to rebuild it, so every
 * process answers from what is committed. PostgreSQL still reads each page's rows (name, URL,
 * status, locations), so those are always current.
 */
import type pg from 'pg';
import { DirectoryIndex } from './search-index.ts';
import * as sql from './sql.ts';

export { DirectoryIndex, editDistance } from './search-index.ts';

/** Systems per page of a search (1upHealth's page). */
export const PAGE_SIZE = 20;

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

/**
 * The in-memory index of one pool's directory, rebuilt first when the directory changed since it
 * was built, and the rebuild under way (searches arriving meanwhile share it). One per pool: its
 * owner (plugins/directory.ts) makes it and passes it to each search.
 */
export class DirectoryIndexCache {
  private readonly pool: pg.Pool;
  private index?: DirectoryIndex;
  private building?: Promise<DirectoryIndex>;

  constructor(pool: pg.Pool) {
    this.pool = pool;
  }

  /** The pool's index, rebuilt first if the directory changed since it was built (also to warm it at start). */
  async current(): Promise<DirectoryIndex> {
    const { rows } = await this.pool.query<{ version: string }>(sql.directoryVersion());
    const version = rows[0]?.version ?? '0';
    if (this.index?.version === version) return this.index;
    if (this.building) {
      const built = await this.building;
      if (built.version === version) return built;
    }
    this.building = DirectoryIndex.load(this.pool, version).finally(() => (this.building = undefined));
    this.index = await this.building;
    return this.index;
  }
}

/** A page of the systems matching `q`, best first, with what the pool holds of each now. */
export async function searchSystems(pool: pg.Pool, indexes: DirectoryIndexCache, q: SystemQuery): Promise<SystemHit[]> {
  const ids = (await indexes.current()).search(q);
  if (!ids.length) return [];
  const [systems, orgs] = await Promise.all([
    pool.query<{ id: string; name: string; resource_url: string; vendor: string | null; fhir_version: string | null; status: string }>(
      sql.systemsById(ids),
    ),
    pool.query<{ system_id: string; name: string; line: string | null; city: string | null; state: string | null; postal_code: string | null }>(
      sql.locationsOf(ids),
    ),
  ]);
  const bySystem = new Map<string, Location[]>();
  for (const o of orgs.rows) {
    const list = bySystem.get(o.system_id) ?? [];
    list.push({ name: o.name, address: { line: o.line, city: o.city, postalCode: o.postal_code, state: o.state } });
    bySystem.set(o.system_id, list);
  }
  const byId = new Map(systems.rows.map((r) => [r.id, r]));
  // In the index's order; a system gone since the index was built is left out.
  return ids.flatMap((id) => {
    const r = byId.get(id);
    return r
      ? [
          {
            id,
            name: r.name,
            resourceUrl: r.resource_url,
            vendor: r.vendor,
            fhirVersion: r.fhir_version,
            status: r.status,
            locations: bySystem.get(id) ?? [],
          },
        ]
      : [];
  });
}
