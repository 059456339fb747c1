/**
 * Writes many resources under ids the caller chose (the directory's FHIR view, the sandbox
 * systems' records, and later the sync), in the caller's transaction: the current versions are
 * locked, each resource indexed, and the writes go in batches that let the server serve meanwhile.
 * A resource equal to its current version makes no version; `null` deletes (when there is
 * something to delete). No validation: the callers generate what they write, and test it.
 */
import type pg from 'pg';
import type { Resource } from '@medplum/fhirtypes';
import type { ResourceIndexer, Scope } from './ports.ts';
import type { Repository, WriteItem } from '../storage/repository.ts';
import { yieldToOthers } from '../event-loop.ts';

/** Resources per write: one write's statements are built in one go. */
const WRITE_BATCH = 500;

export interface BulkDeps {
  repo: Repository;
  indexer: ResourceIndexer;
}

export interface Wanted {
  type: string;
  id: string;
  resource: Resource | null;
}

export interface BulkResult {
  /** New resources, and existing ones given a new version (a delete included). */
  created: number;
  updated: number;
  unchanged: number;
  written: number;
  /** The resources given a new version. */
  changed: { type: string; id: string }[];
}

export async function writeResources(deps: BulkDeps, c: pg.PoolClient, scope: Scope, wanted: Wanted[]): Promise<BulkResult> {
  const current = await deps.repo.lockCurrent(c, scope, wanted);
  const items: WriteItem[] = [];
  for (const [i, w] of wanted.entries()) {
    if (i % 1000 === 999) await yieldToOthers();
    const existing = current.get(`${w.type}/${w.id}`) ?? null;
    if (!w.resource && (!existing || existing.deleted)) continue;
    items.push({ ...w, existing, indexes: w.resource ? deps.indexer.extract(w.resource, null) : undefined });
  }
  let created = 0;
  let updated = 0;
  const changed: { type: string; id: string }[] = [];
  for (let i = 0; i < items.length; i += WRITE_BATCH) {
    const batch = items.slice(i, i + WRITE_BATCH);
    const results = await deps.repo.write(c, scope, batch);
    results.forEach((r, k) => {
      if (!r.changed) return;
      if (batch[k].existing) updated++;
      else created++;
      changed.push({ type: batch[k].type, id: batch[k].id });
    });
    await yieldToOthers();
  }
  return { created, updated, unchanged: items.length - created - updated, written: created + updated, changed };
}
