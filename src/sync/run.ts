/**
 * One sync of one connection: the system's records for the person, into the user's, page by page.
 * - One run per connection for the run's whole life: a PostgreSQL advisory lock held on a client of
 *   its own (the server releases it when the worker dies). A run that finds the lock taken ends at
 *   once, `skipped`; one that takes it and finds a run still marked running marks that one failed:
 *   it was cut off, and what it stored is kept.
 * - What to ask for and how: src/sync/fetcher.ts (events, one page at a time). The mode of each type
 *   is decided here: a first sync is full for every type; a type the system lists `_lastUpdated` for
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
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import type { Vault } from '../auth/vault.ts';
import { clientForSystem, connectionSealKey, type ClientKey, type Tokens } from '../connect/client.ts';
import type { BulkDeps } from '../fhir/bulk.ts';
import type { ResourceValidator, Scope } from '../fhir/ports.ts';
import { scrubAddresses, type OutboundFetch } from '../net/outbound.ts';
import { prepareAttachments } from './attachments.ts';
import { capabilities, fetchConnection, type FetchEvent } from './fetcher.ts';
import { localId, referencedTargets, toLocal, type Origin } from './mapper.ts';
import { EVERYTHING, granted, parseGrants } from './plan.ts';
import type { SystemLimiter } from './rate-limit.ts';
import type { Refusal } from './refusal.ts';
import { NeedsReauth, SourceSession, type SessionOptions } from './session.ts';
import {
  deleteMissing, loadProgress, saveQueryDone, savePageProgress, saveTypeState, storedOf, transaction, writePage, type Progress, type TypeState,
} from './store.ts';

export const OUTSIDE_TYPES = ['Practitioner', 'PractitionerRole', 'Organization', 'Location', 'Medication'];
/** Skipped resources and warnings a run's log names one by one. */
const MAX_ISSUES = 100;
/** Outside reads at once (the session's per-system limits apply besides). */
const OUTSIDE_PARALLEL = 4;
/** Rounds of outside reads per page: what an outside record refers to outside (a role's organization). */
const OUTSIDE_ROUNDS = 2;
/** The first key of the run lock (pg_try_advisory_lock(key1, key2)); the second is the connection id. */
export const RUN_LOCK_SPACE = 0x54524253;
/** The second key of a connection's run lock. */
export const runLockKey = (connectionId: string | number) => Number(BigInt(connectionId) % 2147483647n);

export interface SyncPolicy {
  /** Subtracted from our fetch time to make a checkpoint. */
  checkpointMarginSeconds: number;
  /** A type with `_lastUpdated`: a full fetch (the reconciliation sweep) this often. */
  sweepHours: number;
  /** A type without: a full fetch this often, skipped in between. */
  fullMinutes: number;
}
export const DEFAULT_POLICY: SyncPolicy = { checkpointMarginSeconds: 300, sweepHours: 24, fullMinutes: 60 };

export interface SyncDeps extends BulkDeps {
  pool: pg.Pool;
  vault: Vault;
  validator: ResourceValidator;
  clientKey: () => Promise<ClientKey>;
  /** This server's origin: plain http is allowed to it (the sandboxes). */
  ownOrigin: string;
  /** The app's outbound fetch (src/net/outbound.ts): every request to the system goes through it. */
  fetch: OutboundFetch;
  session?: SessionOptions;
  /** One per process (plugins/sync.ts): the per-system rate shared by every process. */
  limiter?: SystemLimiter;
  policy?: SyncPolicy;
  /** Note contents: the largest fetched, and how many a run fetches at most. */
  attachments?: { maxBytes: number; perRun: number };
}

export interface RunSummary {
  runId: string;
  status: 'succeeded' | 'failed' | 'needs_reauth' | 'skipped';
  fetched: number;
  created: number;
  updated: number;
  unchanged: number;
  failed: number;
  /** Records deleted because a full fetch of their type no longer returned them. */
  deleted: number;
  /** `everything` (Patient/$everything) or `per-type` (a search per type). */
  strategy?: 'everything' | 'per-type';
  /** Requests sent to the system, retries included. */
  requests: number;
  error?: string;
}

interface ConnectionRow {
  app_id: number;
  user_id: string;
  system_id: string;
  patient_id: string | null;
  scope: string;
  access_token_sealed: Buffer;
  refresh_token_sealed: Buffer | null;
  access_expires_at: Date | null;
  name: string;
  resource_url: string;
  vendor: string | null;
}

/** What the run saw of one type (or `$everything`). */
interface TypeRun {
  started: Set<string>;
  done: Set<string>;
  allFull: boolean;
  resumed: boolean;
  failed?: string;
  refusal?: Refusal & { query: string };
  variants: (Refusal & { query: string })[];
  fetched: number;
  /** Local ids of the resources of the type this run stored. */
  seen: Set<string>;
}

const typeOfKey = (key: string) => key.split('?')[0];

/**
 * `onLocked`: called once the run holds the connection's lock, before it fetches anything (the
 * queue's job ends there: the lock, not the job, keeps other runs out from then on).
 */
export async function syncConnection(deps: SyncDeps, connectionId: string, o: { onLocked?: () => Promise<void> } = {}): Promise<RunSummary> {
  const { rows } = await deps.pool.query<ConnectionRow>(
    `SELECT c.app_id, c.user_id, c.system_id, c.patient_id, c.scope, c.access_token_sealed, c.refresh_token_sealed, c.access_expires_at, s.name, s.resource_url, s.vendor
     FROM trb_connection c JOIN trb_system s ON s.id = c.system_id WHERE c.id = $1 AND c.status = 'active'`,
    [connectionId],
  );
  const conn = rows[0];
  const empty = { fetched: 0, created: 0, updated: 0, unchanged: 0, failed: 0, deleted: 0, requests: 0 };
  // Gone (disconnected), or waiting for the person to connect again: nothing to do, nothing to log.
  if (!conn) return { runId: '', status: 'needs_reauth', ...empty, error: 'The connection is gone or needs the person to connect again.' };

  const lock = await deps.pool.connect();
  let lockBroken: Error | undefined;
  const onLockError = (err: Error) => (lockBroken = err);
  lock.on('error', onLockError);
  try {
    const got = await lock.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [RUN_LOCK_SPACE, runLockKey(connectionId)]);
    if (!got.rows[0].ok) {
      const error = 'Another run of this connection was still going; this one ended at once.';
      const skipped = await deps.pool.query<{ id: string }>(
        `INSERT INTO trb_sync_run (connection_id, status, finished_at, error) VALUES ($1, 'skipped', now(), $2) RETURNING id::text`,
        [connectionId, error],
      );
      return { runId: skipped.rows[0].id, status: 'skipped', ...empty, error };
    }
    try {
      await o.onLocked?.().catch(() => {});
      return await locked(deps, lock, connectionId, conn);
    } finally {
      if (!lockBroken) await lock.query('SELECT pg_advisory_unlock($1, $2)', [RUN_LOCK_SPACE, runLockKey(connectionId)]).catch(() => {});
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
  const run = await lock.query<{ id: string; started_at: Date }>(
    `WITH cut AS (UPDATE trb_sync_run SET status = 'failed', finished_at = now(), error = $2 WHERE connection_id = $1 AND status = 'running')
     INSERT INTO trb_sync_run (connection_id) VALUES ($1) RETURNING id::text, started_at`,
    [connectionId, 'The run was cut off before it finished (its worker stopped or died); the pages it stored were kept, and the next run went on from them.'],
  );
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
    const sc = await clientForSystem(deps.pool, deps.vault, { id: conn.system_id, name: conn.name, resource_url: origin.base, vendor: conn.vendor }, deps.ownOrigin, deps.clientKey, deps.fetch);
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
        await deps.pool.query('UPDATE trb_connection SET access_token_sealed = $2, refresh_token_sealed = $3, access_expires_at = $4, updated_at = now() WHERE id = $1', [
          connectionId,
          deps.vault.encrypt(t.accessToken, sealKey, 'connection-token'),
          t.refreshToken ? deps.vault.encrypt(t.refreshToken, sealKey, 'connection-token') : conn.refresh_token_sealed,
          t.expiresAt,
        ]);
      },
      deps.session,
      deps.limiter,
    );
    const progress = await loadProgress(lock, connectionId);
    // Which types the system serves (the reference rule): the fetch side's CapabilityStatement, read once for both.
    const caps = await capabilities(session, origin.base);
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
    issues.splice(MAX_ISSUES, Infinity, { severity: 'information', code: 'too-costly', diagnostics: `${more} more issues were not recorded one by one.` });
  }
  // The run's record and the connection's state, in one statement.
  await deps.pool.query(
    `WITH run AS (UPDATE trb_sync_run SET finished_at = now(), status = $2, fetched = $3, created = $4, updated = $5, unchanged = $6, failed = $7, error = $8, issues = $9, strategy = $10, requests = $11, deleted = $12 WHERE id = $1 RETURNING connection_id)
     UPDATE trb_connection SET last_sync_at = now(), last_error = $8,
       last_success_at = CASE WHEN $2 = 'succeeded' THEN now() ELSE last_success_at END,
       status = CASE WHEN $2 = 'needs_reauth' THEN 'needs_reauth' ELSE status END
     WHERE id = (SELECT connection_id FROM run)`,
    [runId, summary.status, summary.fetched, summary.created, summary.updated, summary.unchanged, summary.failed, summary.error ?? null, scrubAddresses(JSON.stringify(issues)), summary.strategy ?? null, summary.requests, summary.deleted],
  );
  return summary;
}

interface RunContext {
  connectionId: string;
  runId: string;
  runStartedAt: Date;
  conn: ConnectionRow;
  origin: Origin;
  scope: Scope;
  session: SourceSession;
  policy: SyncPolicy;
  progress: Progress;
  served: { types: string[]; everything: boolean };
  summary: RunSummary;
  issue: (i: OperationOutcomeIssue) => void;
}

/** The fetcher's events, stored as they come. */
async function runEvents(deps: SyncDeps, db: pg.PoolClient, x: RunContext): Promise<void> {
  const { origin, scope, session, policy, progress, summary } = x;
  const grants = parseGrants(x.conn.scope);
  const now = Date.now();
  const modes = new Map<string, 'full' | 'increment' | 'skip'>();
  const mode = (type: string, incremental: boolean): 'full' | 'increment' | 'skip' => {
    const last = progress.types.get(type)?.lastFullAt?.getTime();
    const m = last === undefined ? 'full' : incremental ? (now - last >= policy.sweepHours * 3_600_000 ? 'full' : 'increment') : now - last >= policy.fullMinutes * 60_000 ? 'full' : 'skip';
    modes.set(type, m);
    return m;
  };

  // The reference rule: the types the system serves for this patient and has not refused.
  const refusedBefore = new Set([...progress.types].filter(([, s]) => s.status === 'refused' || s.status === 'not-granted').map(([t]) => t));
  const fetchable = new Set(['Patient', ...x.served.types].filter((t) => granted(grants, t, t === 'Patient' ? 'read' : 'search') && !refusedBefore.has(t)));
  /** Outside targets read this run (stored), and those whose read failed. */
  const outsideRead = new Set<string>();
  const outsideFailed = new Set<string>();
  const budget = { left: deps.attachments?.perRun ?? 50 };

  const runs = new Map<string, TypeRun>();
  const typeRun = (type: string): TypeRun => {
    let r = runs.get(type);
    if (!r) runs.set(type, (r = { started: new Set(), done: new Set(), allFull: true, resumed: false, variants: [], fetched: 0, seen: new Set() }));
    return r;
  };
  const finalized = new Set<string>();
  let pageNo = 0;
  let current: string | undefined;
  let queriesDone = 0;
  const failures: string[] = [];

  /** Outside records this page refers to and the user's records lack: read once per run. */
  const readOutside = async (resources: Resource[], here: Set<string>): Promise<Resource[]> => {
    const found: Resource[] = [];
    let from = resources;
    for (let round = 0; round < OUTSIDE_ROUNDS && from.length; round++) {
      const wanted = new Map<string, { type: string; id: string }>();
      for (const r of from) {
        for (const t of referencedTargets(origin, r)) {
          const key = `${t.type}/${t.id}`;
          if (OUTSIDE_TYPES.includes(t.type) && !here.has(key) && !outsideRead.has(key) && !outsideFailed.has(key)) wanted.set(key, t);
        }
      }
      if (!wanted.size) break;
      const stored = await storedOf(db, scope, [...wanted.values()].map((t) => ({ type: t.type, id: localId(origin, t.type, t.id) })));
      const toRead = [...wanted.values()].filter((t) => !stored.has(`${t.type}/${localId(origin, t.type, t.id)}`));
      for (const t of wanted.values()) if (!toRead.includes(t)) outsideRead.add(`${t.type}/${t.id}`);
      const got: Resource[] = [];
      for (let i = 0; i < toRead.length; i += OUTSIDE_PARALLEL) {
        await Promise.all(
          toRead.slice(i, i + OUTSIDE_PARALLEL).map(async (t) => {
            const key = `${t.type}/${t.id}`;
            try {
              const r = (await session.getJson(`${origin.base}/${t.type}/${encodeURIComponent(t.id)}`)) as Resource;
              if (r?.resourceType !== t.type || typeof r.id !== 'string' || !valid(r)) throw new Error('not a valid resource');
              outsideRead.add(key);
              here.add(key);
              got.push(r);
            } catch (err) {
              if (err instanceof NeedsReauth) throw err;
              // A reference the system cannot resolve stays its absolute URL.
              outsideFailed.add(key);
            }
          }),
        );
      }
      found.push(...got);
      from = got;
    }
    return found;
  };

  const valid = (r: Resource) => {
    const problems = deps.validator.validate(r).filter((i) => i.severity === 'error' || i.severity === 'fatal');
    if (!problems.length) return true;
    summary.failed++;
    x.issue({ severity: 'error', code: 'invalid', diagnostics: `${r.resourceType}/${r.id} from ${origin.base} was skipped: ${problems[0].diagnostics ?? 'not valid R4'}`.slice(0, 500) });
    return false;
  };

  const storePage = async (ev: Extract<FetchEvent, { kind: 'page' }>) => {
    const seenHere = new Set<string>();
    const good: Resource[] = [];
    for (const r of ev.resources) {
      const key = `${r.resourceType}/${r.id}`;
      if (seenHere.has(key) || !valid(r)) continue;
      seenHere.add(key);
      good.push(r);
    }
    summary.fetched += ev.resources.length;
    const here = new Set(seenHere);
    const outside = await readOutside(good, here);
    summary.fetched += outside.length;
    const attachments = good.some((r) => r.resourceType === 'DocumentReference' || r.resourceType === 'DiagnosticReport') && deps.attachments?.perRun !== 0
      ? await prepareAttachments({ session, pool: deps.pool, deps, scope, origin, connectionId: x.connectionId, maxBytes: deps.attachments?.maxBytes ?? 10 * 1024 * 1024, budget }, good)
      : new Map<string, string>();
    const all = [...outside, ...good];
    // Targets of the page's references that are in the user's records (the outside ones decide by it).
    const targets = new Map<string, { type: string; id: string }>();
    for (const r of all) for (const t of referencedTargets(origin, r)) if (!fetchable.has(t.type) && !here.has(`${t.type}/${t.id}`)) targets.set(`${t.type}/${localId(origin, t.type, t.id)}`, { type: t.type, id: localId(origin, t.type, t.id) });
    const pageNumber = ++pageNo;
    await transaction(db, async () => {
      const stored = await storedOf(db, scope, [...targets.values()]);
      const resolves = (type: string, id: string) => here.has(`${type}/${id}`) || (fetchable.has(type) && !OUTSIDE_TYPES.includes(type)) || stored.has(`${type}/${localId(origin, type, id)}`);
      const local = all.map((r) => toLocal(origin, r, resolves, attachments));
      const w = await writePage(deps, db, scope, origin, local, `sync-run-${x.runId}-${pageNumber}`);
      summary.created += w.created;
      summary.updated += w.updated;
      summary.unchanged += w.unchanged;
      await savePageProgress(db, x.connectionId, ev.query, ev.next, x.runStartedAt);
    });
    for (const r of good) {
      const tr = typeRun(r.resourceType);
      tr.fetched++;
      tr.seen.add(localId(origin, r.resourceType, r.id!));
    }
  };

  /** The types a query key stands for (`$everything`: the Patient and every type listed). */
  const coversOf = (key: string) => (key === EVERYTHING ? ['Patient', ...x.served.types] : [typeOfKey(key)]);

  /** Records what the run saw of a type; deletes what its full fetch no longer returned. */
  const finalize = async (type: string) => {
    if (finalized.has(type)) return;
    finalized.add(type);
    const tr = typeRun(type);
    const complete = tr.done.size > 0 && [...tr.started].every((q) => tr.done.has(q)) && !tr.failed && !tr.refusal;
    const full = complete && tr.allFull;
    const state: TypeState = {
      status: tr.refusal ? (tr.refusal.kind === 'not-granted' ? 'not-granted' : 'refused') : tr.failed && !tr.done.size ? 'failed' : 'fetched',
      fetched: tr.fetched,
      ...(tr.refusal ? { refusal: tr.refusal } : {}),
      // Only variants asked (a learned plan) and none refused: the refusals recorded before stand.
      ...(tr.variants.length || ![...tr.started].every((q) => q.includes('?')) || !tr.started.size ? { refusedVariants: tr.variants } : {}),
      ...(tr.failed ? { error: tr.failed } : {}),
      ...(full ? { fullAt: new Date(now) } : {}),
    };
    // Within one run only: a pass resumed from a cut-off run saw only part of the set.
    const reconcile = full && !tr.resumed && type !== 'Patient' && type !== EVERYTHING && !OUTSIDE_TYPES.includes(type);
    await transaction(db, async () => {
      if (reconcile) summary.deleted += await deleteMissing(deps, db, scope, x.conn.system_id, type, tr.seen);
      await saveTypeState(db, x.connectionId, x.runId, type, state);
    });
  };

  /** An event of a type (or `$everything`): a move to another type finalizes the last one. */
  const enterType = async (type: string) => {
    if (current && current !== type && current !== EVERYTHING) await finalize(current);
    current = type;
    return typeRun(type);
  };
  /** A query under way: its type's run, the query counted as started (resumed when a cut-off run left its `next`). */
  const enter = async (key: string) => {
    const tr = await enterType(key === EVERYTHING ? EVERYTHING : typeOfKey(key));
    if (!tr.started.has(key)) {
      tr.started.add(key);
      if (progress.queries.get(key)?.next) tr.resumed = true;
    }
    return tr;
  };

  const events = fetchConnection({
    session,
    pool: deps.pool,
    systemId: x.conn.system_id,
    base: origin.base,
    patientId: x.conn.patient_id!,
    grantedScope: x.conn.scope,
    mode,
    progress: progress.queries,
  });
  for await (const ev of events) {
    switch (ev.kind) {
      case 'page':
        summary.strategy = ev.query === EVERYTHING ? 'everything' : 'per-type';
        await enter(ev.query);
        await storePage(ev);
        break;
      case 'query-done': {
        const tr = await enter(ev.query);
        tr.done.add(ev.query);
        queriesDone++;
        if (!ev.full) tr.allFull = false;
        await saveQueryDone(db, x.connectionId, ev.query, ev.startedAt, policy.checkpointMarginSeconds);
        if (ev.query === EVERYTHING) {
          // The whole compartment in one query: each type it covers is complete as $everything is.
          for (const type of coversOf(EVERYTHING)) {
            const t = typeRun(type);
            t.started.add(EVERYTHING);
            t.done.add(EVERYTHING);
            t.allFull = ev.full;
            t.resumed = tr.resumed;
          }
        }
        break;
      }
      case 'refused': {
        const tr = await enterType(ev.query === EVERYTHING ? EVERYTHING : ev.type);
        const r = { ...ev.refusal, query: ev.query };
        if (ev.final) {
          typeRun(ev.type).refusal = r;
          fetchable.delete(ev.type);
        } else tr.variants.push(r);
        if (ev.final && ev.refusal.kind !== 'not-granted') x.issue({ severity: 'warning', code: 'forbidden', diagnostics: `${ev.type} was refused (${ev.refusal.kind}, ${ev.refusal.status}): ${ev.refusal.diagnostics}`.slice(0, 500) });
        break;
      }
      case 'failed': {
        const tr = await enter(ev.query);
        tr.failed = ev.error;
        failures.push(ev.error);
        for (const type of ev.covers) typeRun(type).failed ??= ev.error;
        x.issue({ severity: 'error', code: ev.code ?? 'transient', diagnostics: `The search ${ev.query} could not finish: ${ev.error}`.slice(0, 500) });
        break;
      }
      case 'warning':
        x.issue({ ...ev.issue, diagnostics: `${ev.query}: ${ev.issue.diagnostics ?? ev.issue.details?.text ?? ''}`.slice(0, 500) });
        break;
    }
  }
  // Every type the run saw, the ones $everything covered included.
  for (const type of [...runs.keys()]) await finalize(type);
  if (!summary.strategy) summary.strategy = modes.has(EVERYTHING) ? 'everything' : 'per-type';
  // A failure costs its query; a run that got nothing at all (no query finished, no page) failed:
  // the system is down or refuses everything.
  if (failures.length && !queriesDone && !pageNo) {
    summary.status = 'failed';
    summary.error = scrubAddresses(`No search could finish (${failures.length} tried): ${failures[0]}`).slice(0, 1000);
  }
}
