/**
 * The directory's search index in memory: 29,000 systems and their words take a few MB, and a
 * search is a few posting lists, where SQL had to read the text of every system that shares a
 * common word ("health": 12,000 of them). Words of a name, city or address (case and accent
 * insensitive, each word a prefix of a word of the system), narrowed by zip, state, NPI, vendor,
 * FHIR version or URL, ranked by how well the name matches; when the words match nothing, a
 * typo-tolerant pass (each word within one or two edits of a word of the directory).
 */
import type pg from 'pg';
import { foldText } from './importer.ts';
import { yieldToOthers } from '../event-loop.ts';
import type { SystemQuery } from './search.ts';
import * as sql from './sql.ts';

const MAX_WORDS = 8;

interface IndexedSystem {
  id: string;
  url: string;
  vendor: string;
  fhirVersion: string | null;
  zips: string[];
  states: string[];
  npis: string[];
}

/**
 * A query's words must meet in one document: an organization of a system (its name, address, zip,
 * NPI) with the system's own words (vendor, FHIR version, host). Words spread over the 17,000
 * practices of one URL do not make a match.
 */
interface Doc {
  system: number;
  /** The folded name the ranking looks at (the organization's), with a space before each word. */
  names: string;
}

export class DirectoryIndex {
  readonly version: string;
  private readonly systems: IndexedSystem[];
  private readonly docs: Doc[];
  /** Every distinct word, sorted (a prefix is a contiguous range). */
  private readonly words: string[];
  /** The docs having words[i]: postings[starts[i]] up to postings[starts[i + 1]] (one array for all: compact). */
  private readonly starts: Int32Array;
  private readonly postings: Int32Array;

  private constructor(version: string, systems: IndexedSystem[], docs: Doc[], postings: Map<string, number[]>) {
    this.version = version;
    this.systems = systems;
    this.docs = docs;
    this.words = [...postings.keys()].sort();
    this.starts = new Int32Array(this.words.length + 1);
    let total = 0;
    this.words.forEach((w, i) => {
      this.starts[i] = total;
      total += postings.get(w)!.length;
    });
    this.starts[this.words.length] = total;
    this.postings = new Int32Array(total);
    this.words.forEach((w, i) => this.postings.set(postings.get(w)!, this.starts[i]));
  }

  static async load(db: pg.Pool | pg.PoolClient, version: string): Promise<DirectoryIndex> {
    type OrgTuple = [string, string | null, string | null, string | null, string | null, string | null];
    const { rows } = await db.query<{
      id: string;
      name: string;
      url_normalized: string;
      vendor: string | null;
      fhir_version: string | null;
      orgs: OrgTuple[];
    }>(sql.systemsToIndex());
    // Shorter names first, then by id: a system's place in this order breaks every tie in a ranking.
    rows.sort((a, b) => a.name.length - b.name.length || (a.id < b.id ? -1 : 1));
    const postings = new Map<string, number[]>();
    const docs: Doc[] = [];
    const addDoc = (system: number, names: string, text: string) => {
      const d = docs.length;
      docs.push({ system, names: ` ${names}` });
      for (const w of new Set(text.split(' '))) {
        if (!w) continue;
        let list = postings.get(w);
        if (!list) postings.set(w, (list = []));
        list.push(d);
      }
    };
    const systems: IndexedSystem[] = [];
    for (const [n, r] of rows.entries()) {
      // A server builds this while it serves: it lets other work in every 2,000 systems.
      if (n % 2000 === 1999) await yieldToOthers();
      // The system's name is its first organization's (or its host, when it lists none).
      const own = foldText([r.vendor, r.fhir_version, new URL(r.url_normalized).host].filter(Boolean).join(' '));
      if (!r.orgs.length) addDoc(n, foldText(r.name), `${own} ${foldText(r.name)}`);
      for (const [orgName, ...place] of r.orgs) {
        const org = foldText(orgName);
        addDoc(n, org, `${own} ${org} ${foldText(place.filter(Boolean).join(' '))}`);
      }
      const present = (i: number) => [...new Set(r.orgs.map((o) => o[i]).filter((x): x is string => !!x))];
      systems.push({
        id: r.id,
        url: r.url_normalized,
        vendor: (r.vendor ?? '').toLowerCase(),
        fhirVersion: r.fhir_version,
        zips: present(3),
        states: present(2).map((x) => x.toUpperCase()),
        npis: present(4),
      });
    }
    return new DirectoryIndex(version, systems, docs, postings);
  }

  /** The ids of a page of systems matching the query, best first. */
  search(q: SystemQuery): string[] {
    const words = foldText(q.text ?? '')
      .split(' ')
      .filter(Boolean)
      .slice(0, MAX_WORDS);
    let ranked = this.match(q, words, false);
    // Nothing for the words as typed: perhaps a typo (the first page only; later pages follow it).
    if (!ranked.length && words.length && q.offset === 0) ranked = this.match(q, words, true);
    return ranked.slice(q.offset, q.offset + q.limit).map((n) => this.systems[n].id);
  }

  /**
   * The systems matching, best first: by tier (a name starts with the words; has them together;
   * has them all, as word prefixes; they were elsewhere: place, vendor), then fewest edits, then
   * shorter name (the index's order).
   */
  private match(q: SystemQuery, words: string[], typo: boolean): number[] {
    // Each system's best (tier, edits), as tier * 32 + edits; -1: no match (yet).
    const best = new Int32Array(this.systems.length).fill(words.length ? -1 : 0);
    if (words.length) {
      // hits[d] counts the query's words doc d has so far; edits[d] sums how far they were.
      const hits = new Uint8Array(this.docs.length);
      const edits = new Uint8Array(this.docs.length);
      for (let k = 0; k < words.length; k++) {
        for (const [i, cost] of this.wordsFor(words[k], typo)) {
          for (let p = this.starts[i]; p < this.starts[i + 1]; p++) {
            const d = this.postings[p];
            if (hits[d] !== k) continue;
            hits[d] = k + 1;
            edits[d] += cost;
          }
        }
      }
      const phrase = ` ${words.join(' ')}`;
      for (let d = 0; d < this.docs.length; d++) {
        if (hits[d] !== words.length) continue;
        const { system, names } = this.docs[d];
        const tier = names.startsWith(phrase) ? 0 : names.includes(phrase) ? 1 : words.every((w) => names.includes(` ${w}`)) ? 2 : 3;
        const score = tier * 32 + edits[d];
        if (best[system] < 0 || score < best[system]) best[system] = score;
      }
    }
    const zip = q.zip?.trim();
    const state = q.state?.trim().toUpperCase();
    const npi = q.npi?.trim();
    const vendor = q.vendor?.trim().toLowerCase();
    const version = q.fhirVersion?.trim().toUpperCase();
    const url = q.url
      ?.trim()
      .toLowerCase()
      .replace(/^https?:\/\//, '')
      .replace(/\/+$/, '');
    // One list per (tier, edits), each filled in the index's order: no sort needed.
    const buckets: number[][] = [];
    for (let n = 0; n < this.systems.length; n++) {
      if (best[n] < 0) continue;
      const s = this.systems[n];
      if (zip && !s.zips.some((z) => z.startsWith(zip))) continue;
      if (state && !s.states.includes(state)) continue;
      if (npi && !s.npis.includes(npi)) continue;
      if (vendor && !s.vendor.includes(vendor)) continue;
      if (version && s.fhirVersion !== version) continue;
      if (url && !s.url.includes(url)) continue;
      (buckets[best[n]] ??= []).push(n);
    }
    return buckets.flat();
  }

  /** The directory's words (their places in `words`) a query word matches, with the edits it took: those it begins, or (typo) near ones. */
  private *wordsFor(w: string, typo: boolean): Generator<[number, number]> {
    if (!typo) {
      for (let i = lowerBound(this.words, w); i < this.words.length && this.words[i].startsWith(w); i++) yield [i, 0];
      return;
    }
    // One edit allowed in a short word, two in a long one; words of the same first letter only.
    const max = w.length < 4 ? 0 : w.length < 8 ? 1 : 2;
    const first = w[0];
    for (let i = lowerBound(this.words, first); i < this.words.length && this.words[i][0] === first; i++) {
      const word = this.words[i];
      if (word.startsWith(w)) yield [i, 0];
      else if (max) {
        // The word itself, or its beginning, within `max` edits (a typo in a word still being typed).
        const d = Math.min(
          editDistance(w, word, max),
          editDistance(w, word.slice(0, w.length), max),
          editDistance(w, word.slice(0, w.length + 1), max),
        );
        if (d <= max) yield [i, d];
      }
    }
  }
}

function lowerBound(sorted: string[], key: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Edits (insert, delete, substitute, swap two neighbours) from a to b; max + 1 once it is past max. */
export function editDistance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  let prev2: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, prev2[j - 2] + 1);
      cur.push(v);
      if (v < best) best = v;
    }
    if (best > max) return max + 1;
    prev2 = prev;
    prev = cur;
  }
  return Math.min(prev[b.length], max + 1);
}
