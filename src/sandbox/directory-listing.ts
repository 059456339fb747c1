/**
 * The sandbox systems in the directory, under their fixed ids: one CSV list per vendor label
 * imported as any list is (src/directory/importer.ts), each system marked working, with its stated
 * request limit.
 */
import type pg from 'pg';
import { importDirectory } from '../directory/importer.ts';
import { publicBasePath } from './paths.ts';
import type { SandboxDefinition } from './systems.ts';
import * as sql from './sql.ts';

/** The directory's vendor column of Tributary's own sandbox systems. */
export const SANDBOX_VENDOR = 'Tributary sandbox';

export interface ListingDeps {
  pool: pg.Pool;
  /** The outbound allow-list in force (this server's own origin among it, when it serves the sandboxes). */
  allow: readonly string[];
  /** This server's base URL (BASE_URL). */
  baseUrl: string;
}

/** The sandbox systems in the directory, under their fixed ids. */
export async function listInDirectory(deps: ListingDeps, defs: readonly SandboxDefinition[]): Promise<void> {
  const q = (v: string) => `"${v.replace(/"/g, '""')}"`;
  // One file per vendor label (the directory's vendor column): Tributary's own, and each simulated vendor's.
  const labels = [...new Set(defs.map((d) => d.vendorLabel ?? SANDBOX_VENDOR))];
  const files = labels.map((label, i) => {
    const rows = defs
      .filter((d) => (d.vendorLabel ?? SANDBOX_VENDOR) === label)
      .map((d) => [d.directoryId, `${deps.baseUrl}${publicBasePath(d)}`, d.title, d.city, d.state, d.zip].map(q).join(','));
    return { name: i === 0 ? 'sandboxes.csv' : `sandboxes-${i}.csv`, vendor: label, content: ['id,url,name,city,state,zip', ...rows].join('\n') };
  });
  await importDirectory(deps.pool, files, undefined, { allow: deps.allow });
  await deps.pool.query(sql.markWorking(defs.map((d) => d.directoryId)));
  // A stated request limit (eClinicalWorks' 250 a minute), which the sync keeps under.
  for (const d of defs) await deps.pool.query(sql.setRateLimit(d.directoryId, d.rateLimitPerMinute ?? null));
}
