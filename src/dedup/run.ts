/**
 * One person's de-duplication: their current records of the types the rules compare, from every
 * source (meta.source: the system's FHIR base), matched by src/dedup/engine.ts, the links stored
 * (trb_dedup_link) with the person's decisions kept: a rejected pair never linked again, a
 * confirmed one kept. Nothing of the records is changed.
 *
 * Incremental: after a sync that brought nothing (no record of the person changed, none gone, the
 * rules the same) it answers from one look at the records' state. Otherwise the person's links are
 * made again from all their records (2 x 1,000 resources in well under a second), so that a link to
 * a record changed or gone is never left behind. One run per person at a time (an advisory lock);
 * a run that finds it taken is skipped (the one running sees what this one would).
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Resource } from '@medplum/fhirtypes';
import { inTransaction } from '../storage/transaction.ts';
import { findLinks, pairKey, type Candidate } from './engine.ts';
import { DEFAULT_SETTINGS, RULES, type RuleSettings } from './rules.ts';
import * as sql from './sql.ts';

export const DEDUP_TYPES = Object.keys(RULES);

export interface DedupResult {
  status: 'unchanged' | 'linked' | 'skipped';
  resources: number;
  links: number;
  ms: number;
}

const rulesHash = (s: RuleSettings) => createHash('sha256').update(JSON.stringify(s)).digest('hex').slice(0, 16);

/** The source a record came from: its meta.source without a fragment (a run's), or '' for the app's own. */
const sourceOf = (uri: string | null) => (uri ?? '').split('#')[0];

export async function dedupPerson(
  pool: pg.Pool,
  partitionId: number,
  ownerId: string,
  settings: RuleSettings = DEFAULT_SETTINGS,
): Promise<DedupResult> {
  const t0 = performance.now();
  const rules = rulesHash(settings);
  const [now, was] = await Promise.all([
    pool.query<{ changed_through: Date | null; resources: number }>(sql.recordsState(partitionId, ownerId, DEDUP_TYPES)),
    pool.query<{ changed_through: Date | null; resources: number; rules: string }>(sql.stateOf(ownerId)),
  ]);
  const state = now.rows[0];
  const prev = was.rows[0];
  if (prev && prev.rules === rules && prev.resources === state.resources && prev.changed_through?.getTime() === state.changed_through?.getTime()) {
    return { status: 'unchanged', resources: state.resources, links: -1, ms: performance.now() - t0 };
  }
  return inTransaction(pool, async (client) => {
    const { rows: lock } = await client.query<{ locked: boolean }>(sql.lockPerson(ownerId));
    if (!lock[0].locked) return { status: 'skipped' as const, resources: state.resources, links: -1, ms: performance.now() - t0 };
    const [{ rows }, { rows: decided }] = await Promise.all([
      client.query<{ res_id: string; res_type: string; res_text_vc: string | null; source_uri: string | null }>(
        sql.records(partitionId, ownerId, DEDUP_TYPES),
      ),
      client.query<{ a_res_id: string; b_res_id: string; status: string }>(sql.decisions(ownerId)),
    ]);
    const candidates: Candidate[] = [];
    for (const r of rows) {
      if (!r.res_text_vc) continue;
      candidates.push({ key: r.res_id, source: sourceOf(r.source_uri), resource: JSON.parse(r.res_text_vc) as Resource });
    }
    const rejected = new Set(decided.filter((d) => d.status === 'rejected').map((d) => pairKey(d.a_res_id, d.b_res_id)));
    // res_ids compare as numbers: the smaller first, as the table keeps them.
    const links = findLinks(candidates, settings, { rejected }).map((l) => {
      const [a, b] = BigInt(l.a) < BigInt(l.b) ? [l.a, l.b] : [l.b, l.a];
      return { ...l, a, b };
    });
    for (const q of sql.replaceAutoLinks(partitionId, ownerId, links)) await client.query(q);
    await client.query(sql.saveState(partitionId, ownerId, state.changed_through, state.resources, rules));
    return { status: 'linked' as const, resources: candidates.length, links: links.length, ms: performance.now() - t0 };
  });
}

/**
 * Every person whose links were made with other rules, de-duplicated again with `settings` (at a
 * worker's start, after DEDUP_RULES_FILE changed), one at a time, with progress in the log. Several
 * processes may do it at once: a person already done answers `unchanged`, one being done `skipped`.
 */
export async function rerunChangedRules(
  pool: pg.Pool,
  settings: RuleSettings,
  log: { info(o: object, msg: string): void; warn(o: object, msg: string): void },
  signal?: AbortSignal,
): Promise<{ people: number; ran: number }> {
  const { rows } = await pool.query<{ owner_id: string; partition_id: number }>(sql.peopleWithOtherRules(rulesHash(settings)));
  if (!rows.length) return { people: 0, ran: 0 };
  log.info({ people: rows.length }, 'de-duplication rules changed: every person is de-duplicated again');
  let ran = 0;
  let lastLog = Date.now();
  for (const [i, r] of rows.entries()) {
    if (signal?.aborted) break;
    try {
      if ((await dedupPerson(pool, r.partition_id, r.owner_id, settings)).status === 'linked') ran++;
    } catch (err) {
      log.warn({ owner: r.owner_id, err: String(err) }, 'de-duplication failed');
    }
    if (Date.now() - lastLog > 5000) {
      lastLog = Date.now();
      log.info({ done: i + 1, of: rows.length }, 'de-duplication under the new rules');
    }
  }
  log.info({ people: rows.length, ran }, 'de-duplication under the new rules done');
  return { people: rows.length, ran };
}
