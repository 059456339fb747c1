/**
 * The fetch side of one sync run: what the system has for the patient, page by page, as events
 * for the run (src/sync/run.ts) to store as they come. The generator asks for the next page only
 * when the consumer asks for the next event, so at most one page is held.
 * - Which queries: Patient/$everything where the CapabilityStatement lists it (and the run's mode
 *   wants it); else a read of `Patient/{id}` and a search per type (src/sync/plan.ts: the types
 *   listed with a patient parameter, those the granted scopes allow; the others are `refused`
 *   `not-granted`). A search refused for a missing parameter is retried with the variants it needs
 *   (category fan-out, `intent`, `status`), each refused variant costing itself only; what works is
 *   remembered per system, so later runs go straight to it.
 * - Increments: `_lastUpdated` only where the system lists it for the type (the name as listed),
 *   `gt` first, `ge` when `gt` is refused (Oracle's MedicationRequest), none when both are; $everything
 *   with `_since` only while the system is not seen ignoring it (an increment that returned as many
 *   matches as the last full fetch: MEDITECH).
 * - Paging: `next` followed verbatim on the system's origin (scheme, host, port), never trusting
 *   `total`, until there is none; `_count` made smaller when refused (Blue Button takes 50 at most),
 *   or dropped when it breaks a parameter combination (eCW); an expired page token restarts the
 *   query from its first page (twice at most); a `next` kept from a cut-off run is tried first.
 * - OperationOutcome entries in a 200 bundle are `warning` events; includes are not matches.
 * - Only NeedsReauth ends the run (thrown); a refusal is a `refused` event, a failure (retries used
 *   up, a whole-search 500, no answer) a `failed` event: nothing is lost, the next run tries again.
 * See: /work/shared/ehr-behaviour.md, "What breaks a naive sync".
 */
import type pg from 'pg';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { capabilities, type CapabilitiesCache } from './capabilities.ts';
import { runQuery, type QuerySpec } from './fetch-query.ts';
import {
  EVERYTHING,
  fanOut,
  forgetLearned,
  granted,
  loadLearned,
  PAGE_SIZE,
  parseGrants,
  queryKey,
  saveLearned,
  variantOf,
  type Learned,
  type TypeCapability,
} from './plan.ts';
import type { Refusal, RefusalKind } from './refusal.ts';
import type { SourceSession } from './session.ts';

export { capabilities } from './capabilities.ts';

export interface QueryProgress {
  since?: string;
  next?: string;
}

export interface FetchInput {
  session: SourceSession;
  /** For the learned plans (trb_sync_query_plan). */
  pool: pg.Pool;
  /** Each system's capabilities, the process's (passed in: src/sync/capabilities.ts). */
  capabilities: CapabilitiesCache;
  systemId: string;
  /** The system's FHIR base, no trailing slash. */
  base: string;
  patientId: string;
  /** The token response's scope (trb_connection.scope). */
  grantedScope: string;
  /**
   * What to do with a type this run (the run's policy). `incremental`: the system lists
   * `_lastUpdated` for it (for `$everything`: it honours `_since`, as far as is known). `increment`
   * with a `since` in `progress` asks for changes after it; without one, or `full`, the whole set.
   */
  mode(type: string, incremental: boolean): 'full' | 'increment' | 'skip';
  /** Per query key: `since`, the instant to ask changes after (ISO); `next`, a page link to resume a cut-off query with. */
  progress: Map<string, QueryProgress>;
}

export type FetchEvent =
  /** The matches of one page (no OperationOutcome entries, no includes); `next`: the link the query goes on with (absent: last page). */
  | { kind: 'page'; query: string; resources: Resource[]; next?: string }
  /** The query reached its last page; `covers`: the types it fetched; `full`: without `_lastUpdated`/`_since`; `startedAt`: when this run sent its first request. */
  | { kind: 'query-done'; query: string; covers: string[]; full: boolean; startedAt: Date }
  /** A refusal; `final`: nothing of this type can be fetched this run (else one variant of it was refused, the others go on). */
  | { kind: 'refused'; type: string; query: string; refusal: Refusal; final: boolean }
  /** The query could not finish (retries used up, whole-search 500, no answer): the next run tries again. */
  | { kind: 'failed'; query: string; covers: string[]; error: string; code?: 'security' }
  /** Something the system said without refusing (an OperationOutcome entry in a 200 bundle: partial access). */
  | { kind: 'warning'; query: string; issue: OperationOutcomeIssue };

/** Refusals that say something lasting about the system (remembered); the others may pass. */
const LASTING: RefusalKind[] = ['missing-parameter', 'unsupported-value', 'not-granted', 'not-offered'];

export async function* fetchConnection(input: FetchInput): AsyncGenerator<FetchEvent> {
  const { session, base, pool, systemId } = input;
  const origin = new URL(base).origin;
  const patient = encodeURIComponent(input.patientId);
  const caps = await capabilities(input.capabilities, session, base);
  const grants = parseGrants(input.grantedScope);
  const learned = await loadLearned(pool, systemId);
  const system = learned.get('*');
  let pageSize = system?.pageSize ?? PAGE_SIZE;
  const learnSize = async (size: number) => {
    pageSize = size;
    await saveLearned(pool, systemId, '*', { working: [], refused: {}, pageSize: size });
  };
  const query = (q: QuerySpec) => runQuery({ session, origin, progress: input.progress, pageSize: () => pageSize, learnSize }, q);

  const countPart = (size: number) => (size > 0 ? `&_count=${size}` : '');
  const listed = caps.types;

  // Patient/$everything: the whole compartment in one query.
  if (caps.everything && granted(grants, 'Patient', 'read')) {
    const ev = learned.get(EVERYTHING);
    const m = input.mode(EVERYTHING, ev?.sinceHonoured !== false);
    if (m !== 'skip') {
      const since = m === 'increment' ? input.progress.get(EVERYTHING)?.since : undefined;
      // What it covers: every type the grants allow (a full $everything is every type's full fetch).
      const covers = ['Patient', ...listed.filter((t) => granted(grants, t.type, 'search')).map((t) => t.type)];
      const end = yield* query({
        key: EVERYTHING,
        covers,
        paged: true,
        ...(since ? { since } : {}),
        url: (size) =>
          `${base}/Patient/${patient}/$everything?${`${since ? `_since=${encodeURIComponent(since)}` : ''}${countPart(size)}`.replace(/^&/, '')}`,
      });
      if (end.outcome === 'done') {
        // What `_since` does here. Proof that it is ignored: a match dated before it. Without dates,
        // an increment as large as the last full fetch says so. (Matches dated after it prove
        // nothing either way: records written since, as a new chart's all are.)
        const known: Omit<Learned, 'learnedAt'> = ev ? { ...ev } : { working: [EVERYTHING], refused: {} };
        let changed = false;
        const ignored = since && (end.older > 0 || (end.dated === 0 && !!known.fullCount && end.matches >= known.fullCount));
        if (!since && known.fullCount !== end.matches) [known.fullCount, changed] = [end.matches, true];
        else if (ignored && known.sinceHonoured !== false) [known.sinceHonoured, changed] = [false, true];
        else if (since && !ignored && (end.dated > 0 || (!!known.fullCount && end.matches < known.fullCount)) && known.sinceHonoured === undefined)
          [known.sinceHonoured, changed] = [true, true];
        if (changed) await saveLearned(pool, systemId, EVERYTHING, { ...known, learnedAt: ev?.learnedAt });
      }
      if (end.outcome !== 'refused') {
        yield* notGranted();
        return;
      }
      // Listed but refused (scopes, a proxy): type by type, and not asked again for a while.
      input.capabilities.set(base, { ...caps, everything: false });
      yield {
        kind: 'warning',
        query: EVERYTHING,
        issue: {
          severity: 'warning',
          code: 'not-supported',
          diagnostics: `Patient/$everything was refused (${end.refusal.diagnostics}); the types are searched one by one.`,
        },
      };
    } else {
      yield* notGranted();
      return;
    }
  }

  /** The types listed that the grants do not allow: final refusals, never asked. */
  async function* notGranted(): AsyncGenerator<FetchEvent> {
    for (const t of listed) {
      if (!granted(grants, t.type, 'search'))
        yield {
          kind: 'refused',
          type: t.type,
          query: t.type,
          refusal: { kind: 'not-granted', status: 0, diagnostics: `The scopes granted do not include patient/${t.type}.read (or .rs): not asked.` },
          final: true,
        };
    }
  }

  // The Patient, by read (several systems refuse a Patient search).
  if (!granted(grants, 'Patient', 'read')) {
    yield {
      kind: 'refused',
      type: 'Patient',
      query: 'Patient',
      refusal: { kind: 'not-granted', status: 0, diagnostics: 'The scopes granted do not include patient/Patient.read (or .r): not asked.' },
      final: true,
    };
  } else if (input.mode('Patient', false) !== 'skip') {
    let end = yield* query({ key: 'Patient', covers: ['Patient'], paged: false, url: () => `${base}/Patient/${patient}` });
    // A system that takes the Patient by `_id` only (Blue Button's search): by search, then.
    if (end.outcome === 'refused' && ['not-offered', 'unsupported-value', 'missing-parameter', 'other'].includes(end.refusal.kind)) {
      end = yield* query({ key: 'Patient', covers: ['Patient'], paged: true, url: (size) => `${base}/Patient?_id=${patient}${countPart(size)}` });
    }
    if (end.outcome === 'refused') yield { kind: 'refused', type: 'Patient', query: 'Patient', refusal: end.refusal, final: true };
  }
  yield* notGranted();
  for (const t of listed) if (granted(grants, t.type, 'search')) yield* fetchType(t);

  /** One type: its plain search, or the variants it needs (learned, or found by fanning out). */
  async function* fetchType(t: TypeCapability): AsyncGenerator<FetchEvent> {
    const type = t.type;
    const known = learned.get(type);
    let prefix = known?.sincePrefix;
    const m = input.mode(type, !!t.lastUpdated && prefix !== 'none');
    if (m === 'skip') return;
    // Nothing works here, as learned: said again, not asked.
    const remembered = known && !known.working.length ? Object.entries(known.refused)[0] : undefined;
    if (remembered) {
      yield { kind: 'refused', type, query: remembered[0], refusal: remembered[1], final: true };
      return;
    }
    const groups: string[][] = known?.working.length ? [known.working] : [[type]];
    const worked: string[] = [];
    const refused: Record<string, Refusal> = {};
    let fannedOut = false;
    let prefixLearned = false;
    for (let g = 0; g < groups.length && !worked.length; g++) {
      for (const key of groups[g]) {
        const variant = variantOf(key);
        const since = m === 'increment' && t.lastUpdated && prefix !== 'none' ? input.progress.get(key)?.since : undefined;
        const end = yield* query({
          key,
          covers: [type],
          paged: true,
          url: (size, p) =>
            `${base}/${type}?${t.patientParam}=${patient}${variant ? `&${variant}` : ''}${p && since ? `&${t.lastUpdated}=${p}${encodeURIComponent(since)}` : ''}${countPart(size)}`,
          ...(since
            ? {
                increment: {
                  prefix: prefix === 'ge' ? 'ge' : 'gt',
                  onPrefix: (p) => {
                    prefix = p;
                    prefixLearned = true;
                  },
                },
              }
            : {}),
        });
        if (end.outcome !== 'refused') {
          worked.push(key);
          continue;
        }
        refused[key] = end.refusal;
        if (
          key === type &&
          !fannedOut &&
          fanOut(type).length &&
          (end.refusal.kind === 'missing-parameter' || end.refusal.kind === 'unsupported-value' || end.refusal.kind === 'other')
        ) {
          // Expected: the plain search is not how this system is asked (it wants a category, an
          // intent, a status; some say so with other words). The variants follow.
          fannedOut = true;
          groups.push(...fanOut(type).map((group) => group.map((v) => queryKey(type, v))));
          continue;
        }
        if (variant) yield { kind: 'refused', type, query: key, refusal: end.refusal, final: false };
      }
    }
    if (!worked.length) {
      const all = Object.values(refused);
      const refusal = all.find((r) => r.kind === 'not-granted') ?? refused[type] ?? all[0];
      if (refusal) yield { kind: 'refused', type, query: type, refusal, final: true };
    }
    // Remember what was learned: lasting refusals, the variants that work, the prefix.
    const lasting = Object.fromEntries(Object.entries(refused).filter(([, r]) => LASTING.includes(r.kind)));
    const transientOnly = !worked.length && !Object.keys(lasting).length;
    if (transientOnly) return;
    if (known) {
      const stale = Object.keys(lasting).some((k) => known.working.includes(k));
      if (stale && !worked.length) await forgetLearned(pool, systemId, type);
      else if (stale || prefixLearned)
        await saveLearned(pool, systemId, type, {
          working: worked,
          refused: { ...known.refused, ...lasting },
          ...(prefix ? { sincePrefix: prefix } : {}),
          learnedAt: stale ? undefined : known.learnedAt,
        });
    } else if (fannedOut || prefixLearned || Object.keys(lasting).length) {
      await saveLearned(pool, systemId, type, { working: worked, refused: lasting, ...(prefix ? { sincePrefix: prefix } : {}) });
    }
  }
}
