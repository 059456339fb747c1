/**
 * What a sync run writes, page by page (src/sync/run.ts decides when):
 * - a page of the source's records into the user's, in one transaction with its query's progress
 *   (trb_sync_query: the `next` link a cut-off pass goes on with), and a Provenance naming what the
 *   page created or changed (none when nothing changed: unchanged content makes no version);
 * - a query's checkpoint when it completes: `since` = when its pass began (our clock, the earliest
 *   of this run's and a cut-off run's start) less the margin, never the source's meta.lastUpdated
 *   (Epic and NextGen send none; a record written at the source during our pass may carry an older
 *   one);
 * - the deletions of a reconciliation: the user's records of a type from this system that a full
 *   fetch did not return (a new, deleted version each, so history shows them);
 * - per connection and type, what the run saw (trb_sync_type), for the app to read.
 */
import type pg from 'pg';
import type { Provenance, Resource } from '@medplum/fhirtypes';
import { HEALTH_SYSTEM_ID } from '../directory/fhir-view.ts';
import { writeResources, type BulkDeps } from '../fhir/bulk.ts';
import type { Scope } from '../fhir/ports.ts';
import type { QueryProgress } from './fetcher.ts';
import { localId, SOURCE_TAG_SYSTEM, type Origin } from './mapper.ts';
import type { Refusal } from './refusal.ts';
import * as progress from './sql/progress.ts';
import * as records from './sql/records.ts';

export type TypeStatus = 'fetched' | 'refused' | 'not-granted' | 'failed';

export interface TypeState {
  status: TypeStatus;
  /** Resources of the type this run stored (unchanged ones included). */
  fetched: number;
  refusal?: Refusal & { query: string };
  /**
   * Searches of the type refused while others answered. Undefined: as the runs before recorded
   * (a learned plan asks only the searches that work, so a run may not meet the refusals again).
   */
  refusedVariants?: (Refusal & { query: string })[];
  error?: string;
  /** Set when this run completed a full fetch of the type. */
  fullAt?: Date;
}

export interface Progress {
  queries: Map<string, QueryProgress>;
  /** Per type (and `$everything`): its status and last full fetch, from the runs before. */
  types: Map<string, { status: TypeStatus; lastFullAt?: Date }>;
}

export async function loadProgress(db: pg.ClientBase, connectionId: string): Promise<Progress> {
  const q = await db.query<{ query_key: string; since: Date | null; next: string | null }>(progress.queryProgress(connectionId));
  const t = await db.query<{ res_type: string; status: TypeStatus; last_full_at: Date | null }>(progress.typeProgress(connectionId));
  return {
    queries: new Map(q.rows.map((r) => [r.query_key, { ...(r.since ? { since: r.since.toISOString() } : {}), ...(r.next ? { next: r.next } : {}) }])),
    types: new Map(t.rows.map((r) => [r.res_type, { status: r.status, ...(r.last_full_at ? { lastFullAt: r.last_full_at } : {}) }])),
  };
}

/** BEGIN, the work, COMMIT on a client the caller holds (ROLLBACK when the work throws). */
export async function transaction<T>(c: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  await c.query('BEGIN');
  try {
    const out = await fn();
    await c.query('COMMIT');
    return out;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

export interface PageWrite {
  created: number;
  updated: number;
  unchanged: number;
}

/**
 * Writes mapped resources (local ids already) in the caller's transaction, with a Provenance naming
 * what changed (`provenanceKey` makes its id: one per page of a run).
 */
export async function writePage(
  deps: BulkDeps,
  c: pg.ClientBase,
  scope: Scope,
  o: Origin,
  local: Resource[],
  provenanceKey: string,
): Promise<PageWrite> {
  const result = await writeResources(
    deps,
    c as pg.PoolClient,
    scope,
    local.map((r) => ({ type: r.resourceType, id: r.id!, resource: r })),
  );
  if (result.written) {
    const provenance: Provenance = {
      resourceType: 'Provenance',
      id: localId(o, 'Provenance', provenanceKey),
      target: result.changed.map((r) => ({ reference: `${r.type}/${r.id}` })),
      recorded: new Date().toISOString(),
      activity: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'UPDATE', display: 'revise' }] },
      agent: [
        {
          type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author', display: 'Author' }] },
          who: { identifier: { system: HEALTH_SYSTEM_ID, value: o.systemId }, display: o.systemName },
        },
        {
          type: {
            coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'assembler', display: 'Assembler' }],
          },
          who: { display: 'Tributary' },
        },
      ],
      meta: { source: o.base },
    };
    await writeResources(deps, c as pg.PoolClient, scope, [{ type: 'Provenance', id: provenance.id!, resource: provenance }]);
  }
  return { created: result.created, updated: result.updated, unchanged: result.unchanged };
}

/** Of these local `Type/id` keys, those in the user's records (not deleted). */
export async function storedOf(c: pg.ClientBase, scope: Scope, keys: { type: string; id: string }[]): Promise<Set<string>> {
  if (!keys.length) return new Set();
  const { rows } = await c.query<{ res_type: string; fhir_id: string }>(
    records.storedOf(
      scope.partitionId,
      scope.ownerId,
      keys.map((k) => k.type),
      keys.map((k) => k.id),
    ),
  );
  return new Set(rows.map((r) => `${r.res_type}/${r.fhir_id}`));
}

/** A page of a query stored: the link its pass goes on with (none: the pass reached its last page). */
export async function savePageProgress(
  c: pg.ClientBase,
  connectionId: string,
  key: string,
  next: string | undefined,
  runStartedAt: Date,
): Promise<void> {
  await c.query(progress.savePageProgress(connectionId, key, next ?? null, runStartedAt));
}

/**
 * A query completed: its checkpoint is when its pass began (the earlier of this run's query start
 * and a cut-off run's pass), less `marginSeconds`.
 */
export async function saveQueryDone(c: pg.ClientBase, connectionId: string, key: string, startedAt: Date, marginSeconds: number): Promise<void> {
  await c.query(progress.saveQueryDone(connectionId, key, startedAt, marginSeconds));
}

/** A pass whose link the system no longer takes, or that failed: the next run starts it over. */
export async function dropNext(c: pg.ClientBase, connectionId: string, key: string): Promise<void> {
  await c.query(progress.dropNext(connectionId, key));
}

/**
 * The reconciliation of one type after a full fetch within one run: the user's records of `type`
 * tagged with this system that are not among `seen` (local ids) are deleted. How many.
 */
export async function deleteMissing(
  deps: BulkDeps,
  c: pg.ClientBase,
  scope: Scope,
  systemId: string,
  type: string,
  seen: Set<string>,
): Promise<number> {
  const { rows } = await c.query<{ fhir_id: string }>(records.taggedOfType(scope.partitionId, scope.ownerId, type, SOURCE_TAG_SYSTEM, systemId));
  const gone = rows.filter((r) => !seen.has(r.fhir_id));
  if (!gone.length) return 0;
  const { written } = await writeResources(
    deps,
    c as pg.PoolClient,
    scope,
    gone.map((r) => ({ type, id: r.fhir_id, resource: null })),
  );
  return written;
}

/** What the run saw of a type, for the app (GET /connect/connections, `types`). */
export async function saveTypeState(db: pg.ClientBase, connectionId: string, runId: string, type: string, s: TypeState): Promise<void> {
  const refusal = s.refusal ? JSON.stringify(s.refusal) : null;
  const variants = JSON.stringify(s.refusedVariants ?? []);
  await db.query(
    progress.saveTypeState(connectionId, type, s.status, s.fetched, refusal, variants, s.error ?? null, s.fullAt ?? null, runId, !s.refusedVariants),
  );
}
