/**
 * One sync of one connection: the system's records for the person, into the user's, page by page.
 * - One run per connection for the run's whole life: a PostgreSQL advisory lock held on a client of
 *   its own (the server releases it when the worker dies). A run that finds the lock taken ends at
 *   once, `skipped`; one that takes it and finds a run still marked running marks that one failed:
 *   it was cut off, and what it stored is kept.
 * - What to ask for and how: src/sync/fetcher.ts (events, one page at a time). The mode of each type
 *   is decided in src/sync/run-events.ts: a first sync is full for every type; a type the system lists `_lastUpdated` for
 *   is an increment every run and a full fetch every SYNC_SWEEP_HOURS (the reconciliation sweep);
 *   one without is a full fetch every SYNC_FULL_MINUTES and skipped in between (a practice with a
 *   calls-a-minute limit is not driven into 429s).
 * - Each page is stored in its own transaction with its query's progress (src/sync/store.ts): a run
 *   cut off anywhere keeps what it stored, and the next one resumes a cut query from its saved
 *   `next`. A query's checkpoint moves when it completes: our fetch time less
 *   SYNC_CHECKPOINT_MARGIN_SECONDS, never the source's meta.lastUpdated.
 * - References (src/sync/mapper.ts): a target of a type the system serves for this patient and has
 *   not refused resolves to its local id (ids are deterministic) even before it arrives; an outside
 *   target (Practitioner, PractitionerRole, Organization, Location, Medication) resolves when it is
 *   in the user's records or its read (once per run, only when not stored yet) succeeded; anything
 *   else stays absolute at the source.
 * - Notes: the attachments of DocumentReference and DiagnosticReport pages are fetched first
 *   (src/sync/attachments.ts) and the stored ones rewritten to the local Binary.
 * - Reconciliation: when a type's full fetch completes within this run (every one of its queries
 *   done from its first page, none failed, the type not refused), the user's records of that type
 *   from this system that it did not return are deleted (a deleted version). Entered-in-error is an
 *   update like any other.
 * - A refusal costs its type (recorded per type in trb_sync_type, for the app); a failure costs its
 *   query until the next run (the run fails only when it got nothing: no query finished, no
 *   page); only NeedsReauth ends a run early.
 * - A resource that is not valid R4 is recorded in the run (an OperationOutcome issue) and skipped.
 */
import type pg from 'pg';
import type { OperationOutcomeIssue } from '@medplum/fhirtypes';
import { clientForSystem, connectionSealKey, type Tokens } from '../connect/client.ts';
import type { Scope } from '../fhir/ports.ts';
import { scrubAddresses } from '../net/outbound.ts';
import { capabilities } from './capabilities.ts';
import type { Origin } from './mapper.ts';
import { runEvents } from './run-events.ts';
import { DEFAULT_POLICY, type ConnectionRow, type RunSummary, type SyncDeps } from './run-types.ts';
import { NeedsReauth, SourceSession } from './session.ts';
import * as connections from './sql/connections.ts';
import * as runs from './sql/runs.ts';
import { loadProgress } from './store.ts';

export { OUTSIDE_TYPES } from './outside.ts';
export { DEFAULT_POLICY, type RunSummary, type SyncDeps, type SyncPolicy } from './run-types.ts';

/** Skipped resources and warnings a run's log names one by one. */
const MAX_ISSUES = 100;
/** The first key of the run lock (pg_try_advisory_lock(key1, key2)); the second is the connection id. */
export const RUN_LOCK_SPACE = 0x54524253;
/** The second key of a connection's run lock. */
export const runLockKey = (connectionId: string | number) => Number(BigInt(connectionId) % 2147483647n);

/**
 * `onLocked`: called once the run holds the connection's lock, before it fetches anything (the
 * queue's job ends there: the lock, not the job, keeps other runs out from then on).
 */
export async function syncConnection(deps: SyncDeps, connectionId: string, o: { onLocked?: () => Promise<void> } = {}): Promise<RunSummary> {
  const { rows } = await deps.pool.query<ConnectionRow>(connections.connectionToSync(connectionId));
  const conn = rows[0];
  const empty = { fetched: 0, created: 0, updated: 0, unchanged: 0, failed: 0, deleted: 0, requests: 0 };
  // Gone (disconnected), or waiting for the person to connect again: nothing to do, nothing to log.
  if (!conn) return { runId: '', status: 'needs_reauth', ...empty, error: 'The connection is gone or needs the person to connect again.' };

  const lock = await deps.pool.connect();
  let lockBroken: Error | undefined;
  const onLockError = (err: Error) => (lockBroken = err);
  lock.on('error', onLockError);
  try {
    const got = await lock.query<{ ok: boolean }>(runs.tryRunLock(RUN_LOCK_SPACE, runLockKey(connectionId)));
    if (!got.rows[0].ok) {
      const error = 'Another run of this connection was still going; this one ended at once.';
      const skipped = await deps.pool.query<{ id: string }>(runs.skippedRun(connectionId, error));
      return { runId: skipped.rows[0].id, status: 'skipped', ...empty, error };
    }
    try {
      await o.onLocked?.().catch(() => {});
      return await locked(deps, lock, connectionId, conn);
    } finally {
      if (!lockBroken) await lock.query(runs.releaseRunLock(RUN_LOCK_SPACE, runLockKey(connectionId))).catch(() => {});
    }
  } finally {
    lock.off('error', onLockError);
    lock.release(lockBroken);
  }
}

/** The run itself, under the connection's lock (`lock`: the client that holds it, used for the writes). */
async function locked(deps: SyncDeps, lock: pg.PoolClient, connectionId: string, conn: ConnectionRow): Promise<RunSummary> {
  const policy = deps.policy ?? DEFAULT_POLICY;
  // A run still marked running while its lock was free was cut off (its worker stopped or died).
  const cutOff =
    'The run was cut off before it finished (its worker stopped or died); the pages it stored were kept, and the next run went on from them.';
  const run = await lock.query<{ id: string; started_at: Date }>(runs.startRun(connectionId, cutOff));
  const runId = run.rows[0].id;
  const runStartedAt = run.rows[0].started_at;
  const summary: RunSummary = { runId, status: 'succeeded', fetched: 0, created: 0, updated: 0, unchanged: 0, failed: 0, deleted: 0, requests: 0 };
  let session: SourceSession | undefined;
  const issues: OperationOutcomeIssue[] = [];
  const issue = (i: OperationOutcomeIssue) => {
    if (issues.length <= MAX_ISSUES) issues.push(i);
    else (issues[MAX_ISSUES] as { count?: number }).count = ((issues[MAX_ISSUES] as { count?: number }).count ?? 1) + 1;
  };
  try {
    if (!conn.patient_id) throw new NeedsReauth('The system named no patient when the person connected: connect again with launch/patient.');
    const origin: Origin = { userId: conn.user_id, systemId: conn.system_id, systemName: conn.name, base: conn.resource_url.replace(/\/+$/, '') };
    const scope: Scope = { partitionId: conn.app_id, ownerId: conn.user_id };
    const sealKey = connectionSealKey(conn.user_id, conn.system_id);
    const system = { id: conn.system_id, name: conn.name, resource_url: origin.base, vendor: conn.vendor };
    const sc = await clientForSystem(deps.pool, deps.vault, system, deps.ownOrigin, deps.clientKey, deps.fetch, deps.discovery);
    const tokens: Tokens = {
      accessToken: deps.vault.decrypt(conn.access_token_sealed, sealKey, 'connection-token'),
      refreshToken: conn.refresh_token_sealed ? deps.vault.decrypt(conn.refresh_token_sealed, sealKey, 'connection-token') : undefined,
      expiresAt: conn.access_expires_at,
      scope: conn.scope,
    };
    session = new SourceSession(
      sc,
      tokens,
      async (t) => {
        // Stored before the new refresh token is used (a rotating system has spent the old one).
        await deps.pool.query(
          connections.saveRefreshedTokens(
            connectionId,
            deps.vault.encrypt(t.accessToken, sealKey, 'connection-token'),
            t.refreshToken ? deps.vault.encrypt(t.refreshToken, sealKey, 'connection-token') : conn.refresh_token_sealed,
            t.expiresAt,
          ),
        );
      },
      deps.session,
      deps.limiter,
      deps.sessions,
    );
    const progress = await loadProgress(lock, connectionId);
    // Which types the system serves (the reference rule): the fetch side's CapabilityStatement, read once for both.
    const caps = await capabilities(deps.capabilities, session, origin.base);
    const served = { types: caps.types.map((t) => t.type), everything: caps.everything };
    await runEvents(deps, lock, { connectionId, runId, runStartedAt, conn, origin, scope, session, policy, progress, served, summary, issue });
  } catch (err) {
    summary.status = err instanceof NeedsReauth ? 'needs_reauth' : 'failed';
    // The app reads it (GET /connect/connections, /runs): no internal address in it.
    summary.error = scrubAddresses((err as Error).message).slice(0, 1000);
  }
  summary.requests = session?.requests ?? 0;
  if (issues.length > MAX_ISSUES) {
    const more = (issues[MAX_ISSUES] as { count?: number }).count ?? 1;
    issues.splice(MAX_ISSUES, Infinity, {
      severity: 'information',
      code: 'too-costly',
      diagnostics: `${more} more issues were not recorded one by one.`,
    });
  }
  // The run's record and the connection's state, in one statement.
  await deps.pool.query(runs.finishRun(runId, summary, scrubAddresses(JSON.stringify(issues))));
  return summary;
}
