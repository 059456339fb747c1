/**
 * The `export` job (src/jobs/queues.ts): one Bulk Data export, start to end.
 *
 * transactionTime T is the kick-off's instant (the database's clock). Before reading, the job waits
 * until every write that may carry a lastUpdated at or before T has committed: SETTLE_MS past T
 * (a write takes its lastUpdated just before its statement starts, or inside its transaction),
 * then until no transaction that began by then is still open. It then reads everything in one
 * REPEATABLE READ snapshot, a COPY per statement (./copy.ts), as of T (./queries.ts): nothing
 * written after T, nothing written before it missing, however the writes interleave.
 * See: https://hl7.org/fhir/uv/bulkdata/export.html#response---complete-status
 */
import type pg from 'pg';
import type { FastifyBaseLogger } from 'fastify';
import { allowed, parseScopes, type ResourceScope } from '../auth/scopes.ts';
import type { SearchEngine } from '../search/engine.ts';
import { to as copyTo } from 'pg-copy-streams';
import type { Repository } from '../storage/repository.ts';
import { idAndMeta, rebuildJson, spliceIndex } from '../storage/meta.ts';
import type { TagDefinition } from '../storage/tags.ts';
import { copyOf, CopyTuples, type ExportTuple } from './copy.ts';
import { outcome } from '../fhir/errors.ts';
import { ExportCancelled, NdjsonFiles } from './ndjson-files.ts';
import { currentVersions, versionsAtT, type Owners } from './queries.ts';
import type { ExportRequest } from './request.ts';
import * as sql from './sql.ts';
import { ownerOfKey } from '../storage/distribution.ts';

/** How long past T a write may still carry a lastUpdated at or before it (see above). */
export const SETTLE_MS = 2000;
/** How long the job waits for open transactions before it gives up (a retry waits again). */
const MAX_WAIT_MS = 10 * 60_000;

export interface ExportDeps {
  pool: pg.Pool;
  repo: Repository;
  search: SearchEngine;
  log: FastifyBaseLogger;
  /** How long a completed export's files are kept (seconds). */
  ttlSeconds: number;
}

export interface ExportRow {
  id: string;
  app_id: number;
  user_id: string | null;
  request: string;
  params: ExportRequest & { grants: string | null };
  status: string;
  transaction_time: Date;
  progress: string | null;
  exported: string;
  error: string | null;
  created_at: Date;
  completed_at: Date | null;
  expires_at: Date;
}

/** Runs the export `exportId`; answers how many resources it wrote (0 when it is gone). */
export async function runExport(exportId: string, deps: ExportDeps): Promise<{ exported: number }> {
  const { rows } = await deps.pool.query<ExportRow>(sql.exportById(exportId));
  const row = rows[0];
  if (!row || row.status === 'completed') return { exported: Number(row?.exported ?? 0) };
  await deps.pool.query(sql.restartExport(exportId));
  try {
    const exported = await exportAll(row, deps);
    await deps.pool.query(sql.completeExport(exportId, exported, deps.ttlSeconds));
    deps.log.info({ export: exportId, exported }, 'export completed');
    return { exported };
  } catch (err) {
    if (err instanceof ExportCancelled) {
      deps.log.info({ export: exportId }, 'export cancelled');
      return { exported: 0 };
    }
    deps.log.error({ export: exportId, err }, 'export failed');
    await deps.pool.query(sql.failExport(exportId, 'The export failed on the server; start it again (the log of the server says why).'));
    throw err;
  }
}

async function exportAll(row: ExportRow, deps: ExportDeps): Promise<number> {
  const at = row.transaction_time;
  await settle(deps.pool, row.id, at);
  const files = new NdjsonFiles(deps.pool, row.id);
  const client = await deps.pool.connect();
  // A COPY left unfinished (the export cancelled, a failure) leaves the connection unusable: it is closed.
  let copying = false;
  let exported = 0;
  let progressAt = 0;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query("SET LOCAL application_name = 'tributary-export'");
    await client.query('SET LOCAL statement_timeout = 0');
    await client.query('SET LOCAL idle_in_transaction_session_timeout = 0');
    const req = row.params;
    const grants = req.grants === null ? undefined : parseScopes(req.grants);
    const owners = await ownersOf(client, row, files);
    const types = await typesOf(client, row, grants);
    const ctx = { partitionId: row.app_id, ownerId: row.user_id, ownOnly: true, baseUrl: '' };
    for (const [i, type] of types.entries()) {
      const filters = req.typeFilters[type] ?? [];
      const source = await deps.search.exportSource(ctx, type, filters, grants);
      const filtered = filters.length > 0 || (grants !== undefined && allowed(grants, 's', type) !== 'all');
      const q = { partitionId: row.app_id, userId: row.user_id, type, source, filtered, owners, at, since: req.since ? new Date(req.since) : null };
      for (const statement of [currentVersions(q), versionsAtT(q)]) {
        copying = true;
        const rows = new CopyTuples();
        for await (const chunk of client.query(copyTo(copyOf(statement))) as AsyncIterable<Buffer>) {
          const tuples = rows.push(chunk);
          // On the pool: this connection is busy with the COPY. (A tag is committed before any version names it.)
          const tags = await deps.repo.tagDefinitions(
            deps.pool,
            tuples.flatMap((t) => t.tagIds),
          );
          for (const t of tuples) {
            await files.addLine('output', type, linePieces(t, tags));
            exported++;
          }
          if (Date.now() - progressAt > 1000) {
            progressAt = Date.now();
            await deps.pool.query(sql.setProgress(row.id, `${exported} resources; ${type} (type ${i + 1} of ${types.length})`, exported));
          }
        }
        rows.end();
        copying = false;
      }
      await files.close();
    }
    await files.close();
    await client.query('COMMIT');
  } catch (err) {
    if (!copying) await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release(copying ? new Error('an export stopped in the middle of a COPY') : undefined);
  }
  return exported;
}

/** A row's line, as a read rebuilds it (src/storage/meta.ts): its stored bytes with the id and meta spliced in. */
function linePieces(t: ExportTuple, tags: Map<string, TagDefinition>): (string | Buffer)[] {
  const meta = {
    id: t.id,
    versionId: t.version,
    lastUpdated: t.lastUpdated,
    source: t.source,
    tags: t.tagIds.length ? t.tagIds.map((id) => tags.get(id)!).filter(Boolean) : null,
  };
  const at = spliceIndex(t.text);
  if (at < 0) return [rebuildJson(t.text.toString('utf8'), meta)];
  return [t.text.subarray(0, at), idAndMeta(meta), t.text.subarray(at)];
}

/** Waits until every write that may carry a lastUpdated at or before `at` has committed (see the top). */
async function settle(pool: pg.Pool, exportId: string, at: Date): Promise<void> {
  const limit = new Date(at.getTime() + SETTLE_MS);
  const started = Date.now();
  for (;;) {
    const { rows } = await pool.query<{ wait_ms: number; open: number }>(sql.writesBefore(limit));
    const { wait_ms: waitMs, open } = rows[0];
    if (waitMs === 0 && open === 0) return;
    if (Date.now() - started > MAX_WAIT_MS) throw new Error(`${open} transactions open since before the export's transactionTime kept it waiting`);
    if (open) await pool.query(sql.setProgress(exportId, `waiting for ${open} writes in progress to commit`, 0));
    await new Promise((r) => setTimeout(r, Math.min(Math.max(waitMs, 50), 500)));
  }
}

/** Whose records: a user's token's (its scope does it), the app's users (Patient level), a Group's members, `patient`'s. */
async function ownersOf(client: pg.PoolClient, row: ExportRow, files: NdjsonFiles): Promise<Owners> {
  const req = row.params;
  if (req.level === 'system') return { kind: 'all' };
  let ids = req.patients;
  if (req.level === 'group') {
    const { rows } = await client.query<{ res_text_vc: string | null }>(sql.groupText(row.app_id, req.groupId!));
    const group = rows[0]?.res_text_vc ? (JSON.parse(rows[0].res_text_vc) as { member?: { entity?: { reference?: string } }[] }) : null;
    const members = (group?.member ?? [])
      .map((m) => m.entity?.reference ?? '')
      .filter((r) => r.startsWith('Patient/'))
      .map((r) => r.slice(8));
    ids = req.patients ? members.filter((m) => req.patients!.includes(m)) : members;
  }
  if (!ids) return row.user_id === null ? { kind: 'any' } : { kind: 'all' };
  const { rows } = await client.query<{ fhir_id: string; owner_id: string | null }>(sql.ownersOfPatients(row.app_id, ids));
  const found = new Map(rows.map((r) => [r.fhir_id, ownerOfKey(r.owner_id)]));
  for (const id of ids) {
    const owner = found.get(id);
    if (owner === undefined || owner === null || (row.user_id !== null && owner !== row.user_id)) {
      // A user's token is not told whether another user's Patient exists.
      const why =
        row.user_id !== null ? 'is not a Patient of yours' : owner === undefined ? 'is not a Patient of this app' : 'is the record of no user';
      await files.add(
        'error',
        'OperationOutcome',
        JSON.stringify(outcome('warning', 'not-found', `Patient/${id} ${why}; its records are not exported.`)),
      );
    }
  }
  const owned = [...new Set(ids.map((id) => found.get(id)).filter((o): o is string => !!o && (row.user_id === null || o === row.user_id)))];
  await files.close();
  return { kind: 'users', ids: owned };
}

/** The types to read: those asked for, or every type the app holds; either way those the scopes let it search. */
async function typesOf(client: pg.PoolClient, row: ExportRow, grants: ResourceScope[] | undefined): Promise<string[]> {
  const asked = row.params.types ?? (await client.query<{ res_type: string }>(sql.typesPresent(row.app_id))).rows.map((r) => r.res_type);
  return grants ? asked.filter((t) => allowed(grants, 's', t) !== 'denied') : asked;
}
