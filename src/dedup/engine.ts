/**
 * Finding a person's duplicate records across their sources: the resources of each type are filed
 * by their rule's blocking keys, each pair that shares a key and comes from two sources is compared
 * once, and the pairs that score at or above the threshold are the links. A pair the person or app
 * rejected is never linked again; one they confirmed stays linked whatever the rules say.
 *
 * Links are made one to one per pair of sources: a resource is linked to at most one resource of
 * each other source (its best), so that two flu shots a week apart at one source never both link to
 * the other source's one.
 */
import type { Resource } from '@medplum/fhirtypes';
import { DEFAULT_SETTINGS, RULES, type RuleSettings } from './rules.ts';

export interface Candidate {
  /** A stable id of the stored resource (its res_id). */
  key: string;
  /** Which of the person's sources it came from (meta.source). */
  source: string;
  resource: Resource;
}

export interface FoundLink {
  type: string;
  a: string;
  b: string;
  score: number;
  rule: string;
}

export interface Decisions {
  /** `a|b` (a < b) pairs rejected: never linked. */
  rejected: ReadonlySet<string>;
}

export const pairKey = (x: string, y: string): string => (x < y ? `${x}|${y}` : `${y}|${x}`);

/** The links among `candidates` (any types, one person), best first per resource. */
export function findLinks(candidates: readonly Candidate[], settings: RuleSettings = DEFAULT_SETTINGS, decisions?: Decisions): FoundLink[] {
  const byType = new Map<string, Candidate[]>();
  for (const c of candidates) {
    if (!RULES[c.resource.resourceType]) continue;
    (byType.get(c.resource.resourceType) ?? byType.set(c.resource.resourceType, []).get(c.resource.resourceType)!).push(c);
  }
  const out: FoundLink[] = [];
  for (const [type, list] of byType) {
    const rule = RULES[type];
    const blocks = new Map<string, Candidate[]>();
    for (const c of list) for (const k of new Set(rule.keys(c.resource))) (blocks.get(k) ?? blocks.set(k, []).get(k)!).push(c);
    const scored: FoundLink[] = [];
    const seen = new Set<string>();
    for (const block of blocks.values()) {
      if (block.length < 2) continue;
      for (let i = 0; i < block.length; i++) {
        for (let j = i + 1; j < block.length; j++) {
          const [x, y] = [block[i], block[j]];
          if (x.source === y.source) continue;
          const pk = pairKey(x.key, y.key);
          if (seen.has(pk)) continue;
          seen.add(pk);
          if (decisions?.rejected.has(pk)) continue;
          const v = rule.compare(x.resource, y.resource, settings);
          if (v && v.score >= settings.threshold) {
            const [a, b] = x.key < y.key ? [x, y] : [y, x];
            scored.push({ type, a: a.key, b: b.key, score: v.score, rule: v.rule });
          }
        }
      }
    }
    // One to one per pair of sources: the best pairs first, each resource taken once per other source.
    const sourceOf = new Map(list.map((c) => [c.key, c.source]));
    const taken = new Set<string>();
    scored.sort((p, q) => q.score - p.score || (p.a < q.a ? -1 : p.a > q.a ? 1 : p.b < q.b ? -1 : 1));
    for (const l of scored) {
      const [ta, tb] = [`${l.a}>${sourceOf.get(l.b)}`, `${l.b}>${sourceOf.get(l.a)}`];
      if (taken.has(ta) || taken.has(tb)) continue;
      taken.add(ta);
      taken.add(tb);
      out.push(l);
    }
  }
  return out;
}
