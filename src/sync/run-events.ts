/**
 * A sync run's events (src/sync/fetcher.ts), stored as they come, under the run's lock
 * (src/sync/run.ts): the mode of each type (full, increment, skip), each page with its outside
 * records and note contents in a transaction of its own with its query's progress, what the run
 * saw of each type (trb_sync_type), and the reconciliation of a type whose full fetch completed.
 */
import type pg from 'pg';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import type { Scope } from '../fhir/ports.ts';
import { scrubAddresses } from '../net/outbound.ts';
import { prepareAttachments } from './attachments.ts';
import { fetchConnection, type FetchEvent } from './fetcher.ts';
import { localId, referencedTargets, toLocal, type Origin } from './mapper.ts';
import { OUTSIDE_TYPES, outsideReader } from './outside.ts';
import { EVERYTHING, granted, parseGrants } from './plan.ts';
import type { Refusal } from './refusal.ts';
import type { ConnectionRow, RunSummary, SyncDeps, SyncPolicy } from './run-types.ts';
import type { SourceSession } from './session.ts';
import {
  deleteMissing,
  saveQueryDone,
  savePageProgress,
  saveTypeState,
  storedOf,
  transaction,
  writePage,
  type Progress,
  type TypeState,
} from './store.ts';

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

export interface RunContext {
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
export async function runEvents(deps: SyncDeps, db: pg.PoolClient, x: RunContext): Promise<void> {
  const { origin, scope, session, policy, progress, summary } = x;
  const grants = parseGrants(x.conn.scope);
  const now = Date.now();
  const modes = new Map<string, 'full' | 'increment' | 'skip'>();
  const mode = (type: string, incremental: boolean): 'full' | 'increment' | 'skip' => {
    const last = progress.types.get(type)?.lastFullAt?.getTime();
    const m =
      last === undefined
        ? 'full'
        : incremental
          ? now - last >= policy.sweepHours * 3_600_000
            ? 'full'
            : 'increment'
          : now - last >= policy.fullMinutes * 60_000
            ? 'full'
            : 'skip';
    modes.set(type, m);
    return m;
  };

  // The reference rule: the types the system serves for this patient and has not refused.
  const refusedBefore = new Set([...progress.types].filter(([, s]) => s.status === 'refused' || s.status === 'not-granted').map(([t]) => t));
  const fetchable = new Set(
    ['Patient', ...x.served.types].filter((t) => granted(grants, t, t === 'Patient' ? 'read' : 'search') && !refusedBefore.has(t)),
  );
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

  const valid = (r: Resource) => {
    const problems = deps.validator.validate(r).filter((i) => i.severity === 'error' || i.severity === 'fatal');
    if (!problems.length) return true;
    summary.failed++;
    x.issue({
      severity: 'error',
      code: 'invalid',
      diagnostics: `${r.resourceType}/${r.id} from ${origin.base} was skipped: ${problems[0].diagnostics ?? 'not valid R4'}`.slice(0, 500),
    });
    return false;
  };
  const readOutside = outsideReader({ db, scope, origin, session, valid });

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
    const attachments =
      good.some((r) => r.resourceType === 'DocumentReference' || r.resourceType === 'DiagnosticReport') && deps.attachments?.perRun !== 0
        ? await prepareAttachments(
            {
              session,
              pool: deps.pool,
              deps,
              scope,
              origin,
              connectionId: x.connectionId,
              maxBytes: deps.attachments?.maxBytes ?? 10 * 1024 * 1024,
              budget,
            },
            good,
          )
        : new Map<string, string>();
    const all = [...outside, ...good];
    // Targets of the page's references that are in the user's records (the outside ones decide by it).
    const targets = new Map<string, { type: string; id: string }>();
    for (const r of all)
      for (const t of referencedTargets(origin, r))
        if (!fetchable.has(t.type) && !here.has(`${t.type}/${t.id}`))
          targets.set(`${t.type}/${localId(origin, t.type, t.id)}`, { type: t.type, id: localId(origin, t.type, t.id) });
    const pageNumber = ++pageNo;
    await transaction(db, async () => {
      const stored = await storedOf(db, scope, [...targets.values()]);
      const resolves = (type: string, id: string) =>
        here.has(`${type}/${id}`) || (fetchable.has(type) && !OUTSIDE_TYPES.includes(type)) || stored.has(`${type}/${localId(origin, type, id)}`);
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
    capabilities: deps.capabilities,
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
        if (ev.final && ev.refusal.kind !== 'not-granted')
          x.issue({
            severity: 'warning',
            code: 'forbidden',
            diagnostics: `${ev.type} was refused (${ev.refusal.kind}, ${ev.refusal.status}): ${ev.refusal.diagnostics}`.slice(0, 500),
          });
        break;
      }
      case 'failed': {
        const tr = await enter(ev.query);
        tr.failed = ev.error;
        failures.push(ev.error);
        for (const type of ev.covers) typeRun(type).failed ??= ev.error;
        x.issue({
          severity: 'error',
          code: ev.code ?? 'transient',
          diagnostics: `The search ${ev.query} could not finish: ${ev.error}`.slice(0, 500),
        });
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
