/**
 * Bulk Data export on the FHIR API (the HTTP side is plugins/export-routes.ts): kick-off, status
 * (202 while it runs, then the manifest), the files, and DELETE. An export answers only the
 * credentials that started it: the same app and the same user (or the app's own credentials).
 * See: https://hl7.org/fhir/uv/bulkdata/export.html
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { to as copyTo } from 'pg-copy-streams';
import type { OperationOutcome } from '@medplum/fhirtypes';
import { searchesAny, type ResourceScope } from '../auth/scopes.ts';
import { need } from '../fhir/access.ts';
import { fhirError, informational, notFound } from '../fhir/errors.ts';
import type { RequestContext } from '../fhir/ports.ts';
import { checkId } from '../fhir/service.ts';
import { EXPORT_QUEUE, exportJob } from '../jobs/queues.ts';
import type { SearchEngine } from '../search/engine.ts';
import { copiedBytes, fileCopy } from './copy.ts';
import type { ExportRow } from './run.ts';
import { kickoffPairs, parseExportRequest, type ExportLevel } from './request.ts';
import * as sql from './sql.ts';

/** Exports one app may have waiting or running at once; past it a kick-off is a 429. */
export const MAX_RUNNING_PER_APP = 5;
/** The Retry-After of a status answer while the export runs (seconds). */
export const POLL_SECONDS = 2;

export interface ExportOperationDeps {
  pool: pg.Pool;
  jobs: Pick<PgBoss, 'send'>;
  search: SearchEngine;
  /** How long an export and its files are kept (seconds). */
  ttlSeconds: number;
}

export interface Kickoff {
  level: ExportLevel;
  groupId?: string;
  query: URLSearchParams;
  body: unknown;
  /** The kick-off's URL as the client sent it (the manifest's `request`). */
  requestUrl: string;
  /** The Prefer header. */
  prefer: string | undefined;
}

/** Starts an export; answers its status URL. */
export async function startExport(
  d: ExportOperationDeps,
  ctx: RequestContext,
  grants: ResourceScope[] | undefined,
  k: Kickoff,
): Promise<{ location: string; outcome: OperationOutcome }> {
  if (!/respond-async/i.test(k.prefer ?? ''))
    throw fhirError(400, 'invalid', 'A bulk export runs in the background: send Prefer: respond-async, then poll the Content-Location answered.');
  if (k.level === 'group') {
    checkId(k.groupId!);
    if (ctx.ownerId !== null)
      throw fhirError(403, 'forbidden', "A Group's export reads many users' records: start it with the app's credentials, not a user's token.");
  }
  const req = parseExportRequest(k.level, kickoffPairs(k.query, k.body), /handling\s*=\s*lenient/i.test(k.prefer ?? ''), k.groupId);
  if (grants) {
    if (req.types) for (const t of req.types) need(grants, 's', t);
    else if (!searchesAny(grants)) need(grants, 's', '*');
  }
  // The filters are checked now (a 400 for a wrong one), though the job builds them again.
  const scope = { ...ctx, ownOnly: true };
  for (const [type, filters] of Object.entries(req.typeFilters)) await d.search.exportSource(scope, type, filters, grants);
  if (req.level === 'group') {
    const { rows } = await d.pool.query(sql.groupText(ctx.partitionId, req.groupId!));
    if (!rows.length) throw notFound(`No Group ${req.groupId} in this app's records; create it (its members the app's Patients) first.`);
  }
  const { rows } = await d.pool.query<{ n: number }>(sql.exportsRunning(ctx.partitionId));
  if (rows[0].n >= MAX_RUNNING_PER_APP) {
    throw fhirError(
      429,
      'throttled',
      `This app has ${rows[0].n} exports waiting or running (at most ${MAX_RUNNING_PER_APP}); wait for one to finish, or DELETE one's status URL.`,
    );
  }
  const id = randomUUID();
  const params = { ...req, grants: grants ? grants.map((g) => g.text).join(' ') : null };
  await d.pool.query(sql.insertExport(id, ctx.partitionId, ctx.ownerId, k.requestUrl, params, d.ttlSeconds));
  const job = exportJob(id);
  await d.jobs.send(EXPORT_QUEUE, job.data, job);
  const location = `${ctx.baseUrl}/$export-status/${id}`;
  return { location, outcome: informational(`The export is under way; poll ${location} for its progress, then its manifest.`) };
}

/** The export `id` if the request's credentials started it; a 404 otherwise (another's is not told apart from none). */
async function ownExport(d: Pick<ExportOperationDeps, 'pool'>, ctx: RequestContext, id: string): Promise<ExportRow> {
  const gone = () => notFound(`No export ${id.slice(0, 64)}: it expired, was deleted, or was started with other credentials. Start a new one.`);
  if (!/^[0-9a-f-]{36}$/.test(id)) throw gone();
  const { rows } = await d.pool.query<ExportRow>(sql.exportById(id));
  const row = rows[0];
  if (!row || row.app_id !== ctx.partitionId || row.user_id !== ctx.ownerId || row.expires_at.getTime() < Date.now()) throw gone();
  return row;
}

export type ExportStatus =
  { state: 'running'; progress: string } | { state: 'failed'; outcome: OperationOutcome } | { state: 'completed'; manifest: Record<string, unknown> };

/** What the status URL answers. */
export async function exportStatus(d: Pick<ExportOperationDeps, 'pool'>, ctx: RequestContext, id: string): Promise<ExportStatus> {
  const row = await ownExport(d, ctx, id);
  if (row.status === 'accepted' || row.status === 'in-progress') return { state: 'running', progress: row.progress ?? 'waiting to start' };
  if (row.status === 'failed') {
    return {
      state: 'failed',
      outcome: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: row.error ?? '' }] },
    };
  }
  const { rows } = await d.pool.query<{ file_no: number; kind: string; res_type: string; count: number }>(sql.filesOf(id));
  const url = (n: number) => `${ctx.baseUrl}/$export-file/${id}/${n}`;
  return {
    state: 'completed',
    manifest: {
      transactionTime: row.transaction_time.toISOString(),
      request: row.request,
      requiresAccessToken: true,
      output: rows.filter((f) => f.kind === 'output').map((f) => ({ type: f.res_type, url: url(f.file_no), count: f.count })),
      deleted: [],
      error: rows.filter((f) => f.kind === 'error').map((f) => ({ type: 'OperationOutcome', url: url(f.file_no), count: f.count })),
    },
  };
}

/** DELETE on the status URL: the export stops (if it runs) and its files go. */
export async function deleteExport(d: Pick<ExportOperationDeps, 'pool'>, ctx: RequestContext, id: string): Promise<OperationOutcome> {
  await ownExport(d, ctx, id);
  await d.pool.query(sql.deleteExport(id));
  return informational(`Export ${id} deleted: it no longer runs, and its files are gone.`);
}

/** A file of a completed export: its size and its bytes, read a few parts at a time. */
export async function exportFile(
  d: Pick<ExportOperationDeps, 'pool'>,
  ctx: RequestContext,
  id: string,
  fileNo: string,
): Promise<{ bytes: number; body: AsyncGenerator<Buffer> }> {
  const row = await ownExport(d, ctx, id);
  const n = Number(fileNo);
  const { rows } = row.status === 'completed' && /^\d{1,9}$/.test(fileNo) ? await d.pool.query<{ bytes: string }>(sql.fileOf(id, n)) : { rows: [] };
  if (!rows.length) throw notFound(`Export ${id} has no file ${fileNo.slice(0, 20)}; its manifest lists the files.`);
  const pool = d.pool;
  async function* parts(): AsyncGenerator<Buffer> {
    // The file's parts in one COPY, passed on as they come (./copy.ts): no part is held whole.
    const client = await pool.connect();
    let complete = false;
    try {
      yield* copiedBytes(client.query(copyTo(fileCopy(id, n))) as AsyncIterable<Buffer>);
      complete = true;
    } finally {
      // A download stopped midway (the client went away) leaves the COPY unfinished: that connection is closed.
      client.release(complete ? undefined : new Error('a download stopped in the middle of its COPY'));
    }
  }
  return { bytes: Number(rows[0].bytes), body: parts() };
}

/** The `export-expire` job: exports past their expiry removed with their files. */
export async function expireExports(pool: pg.Pool): Promise<{ removed: number }> {
  const { rows } = await pool.query<{ n: number }>(sql.deleteExpired());
  return { removed: rows[0].n };
}
