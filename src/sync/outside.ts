/**
 * The outside records a page refers to (Practitioner, PractitionerRole, Organization, Location,
 * Medication: not in the patient's compartment) that the user's records lack: read from the system
 * once per run, in rounds (what an outside record refers to outside: a role's organization). A read
 * that fails leaves the reference absolute at the source.
 */
import type pg from 'pg';
import type { Resource } from '@medplum/fhirtypes';
import type { Scope } from '../fhir/ports.ts';
import { localId, referencedTargets, type Origin } from './mapper.ts';
import { NeedsReauth, type SourceSession } from './session.ts';
import { storedOf } from './store.ts';

export const OUTSIDE_TYPES = ['Practitioner', 'PractitionerRole', 'Organization', 'Location', 'Medication'];
/** Outside reads at once (the session's per-system limits apply besides). */
const OUTSIDE_PARALLEL = 4;
/** Rounds of outside reads per page: what an outside record refers to outside (a role's organization). */
const OUTSIDE_ROUNDS = 2;

export interface OutsideContext {
  db: pg.PoolClient;
  scope: Scope;
  origin: Origin;
  session: SourceSession;
  /** Whether a record read is valid R4 (an invalid one is recorded by the run and skipped). */
  valid(r: Resource): boolean;
}

/**
 * A reader of outside records for one run: called with a page's resources and the `Type/id` keys
 * (at the source) the page holds, it returns the outside records read, adding their keys to `here`.
 */
export function outsideReader(x: OutsideContext): (resources: Resource[], here: Set<string>) => Promise<Resource[]> {
  const { db, scope, origin, session, valid } = x;
  /** Outside targets read this run (stored), and those whose read failed. */
  const outsideRead = new Set<string>();
  const outsideFailed = new Set<string>();
  /** Outside records this page refers to and the user's records lack: read once per run. */
  return async (resources: Resource[], here: Set<string>): Promise<Resource[]> => {
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
      const stored = await storedOf(
        db,
        scope,
        [...wanted.values()].map((t) => ({ type: t.type, id: localId(origin, t.type, t.id) })),
      );
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
}
