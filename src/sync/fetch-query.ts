/**
 * One query of a sync's fetch side (src/sync/fetcher.ts), page by page: its retries past a refusal
 * of its first page (a smaller `_count`, another `_lastUpdated` prefix), an expired page token
 * restarted, a `next` kept from a cut-off run tried first, `next` links followed on the system's
 * origin only and never round a loop.
 */
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import type { FetchEvent, QueryProgress } from './fetcher.ts';
import { variantOf } from './plan.ts';
import { classifyRefusal, type Refusal } from './refusal.ts';
import { NeedsReauth, SourceError, type SourceSession } from './session.ts';

/** Pages of one query at most (a loop of `next` links that never repeats ends here). */
const MAX_PAGES = 2000;
/** Restarts of a query whose page token expired, before it counts as failed. */
const MAX_RESTARTS = 2;

type Entry = { resource?: Resource; search?: { mode?: string } };
type Bundle = { resourceType?: string; entry?: Entry[]; link?: { relation?: string; url?: string }[] };

/** How one query ended. `matches`: the resources its pages held. */
export type QueryEnd =
  { outcome: 'done'; matches: number; dated: number; older: number } | { outcome: 'failed' } | { outcome: 'refused'; refusal: Refusal };

export interface QuerySpec {
  key: string;
  covers: string[];
  /** The first page's URL for a page size (0: no `_count`) and `_lastUpdated` prefix (none: the whole set). */
  url(size: number, prefix: 'gt' | 'ge' | undefined): string;
  /** Whether the query takes `_count` and pages (a read does not). */
  paged: boolean;
  /** Whether it asks for changes only by `_lastUpdated`, with which prefix to begin, and who learns the prefix that works. */
  increment?: { prefix: 'gt' | 'ge'; onPrefix(p: 'gt' | 'ge' | 'none'): void };
  /** The instant it asks changes after by other means (`_since`): matches dated before it are counted (they prove it ignored). */
  since?: string;
}

const transient = (err: SourceError) => err.status === 0 || err.status === 429 || err.status >= 500;
const mentionsCount = (r: Refusal) => /_count|\bcount\b|page size/i.test(r.diagnostics);

/** What a query needs of its fetch. */
export interface QueryContext {
  session: SourceSession;
  /** The system's origin (scheme, host, port): `next` links are followed on it only. */
  origin: string;
  /** Per query key: `next`, a page link to resume a cut-off query with. */
  progress: Map<string, QueryProgress>;
  /** The page size the system takes, as far as is known. */
  pageSize(): number;
  /** A page size the system took (another than `pageSize()`): kept for later queries. */
  learnSize(size: number): Promise<void>;
}

/**
 * One query, page by page, from a `next` kept in `progress` when there is one. Emits its pages,
 * warnings, and query-done or failed; a refusal of its first page is returned (the caller decides
 * what it costs), after the retries that may get past it (a smaller `_count`, another prefix).
 */
export async function* runQuery(x: QueryContext, q: QuerySpec): AsyncGenerator<FetchEvent, QueryEnd> {
  const { session, origin } = x;
  const startedAt = new Date();
  let prefix: 'gt' | 'ge' | undefined = q.increment?.prefix;
  let size = q.paged ? x.pageSize() : 0;
  const kept = x.progress.get(q.key)?.next;
  const resumable = kept && URL.canParse(kept) && new URL(kept).origin === origin ? kept : undefined;
  let url = resumable ?? q.url(size, prefix);
  let resumed = !!resumable;
  let first = !resumed;
  let restarts = 0;
  let matches = 0;
  // Matches carrying meta.lastUpdated, and of those, dated before the `_since` asked.
  let dated = 0;
  let older = 0;
  const sinceMs = q.since ? Date.parse(q.since) : NaN;
  let triedSmaller = false;
  const visited = new Set<string>();
  const fail = (error: string, code?: 'security'): FetchEvent => ({
    kind: 'failed',
    query: q.key,
    covers: q.covers,
    error: error.slice(0, 1000),
    ...(code ? { code } : {}),
  });
  const restart = () => {
    url = q.url(size, prefix);
    first = true;
    resumed = false;
    visited.clear();
  };
  for (let pages = 0; ; pages++) {
    if (pages >= MAX_PAGES) {
      yield fail(`The search ${q.key} went on past ${MAX_PAGES} pages; it was stopped there.`);
      return { outcome: 'failed' };
    }
    visited.add(url);
    let answer: unknown;
    try {
      answer = await session.getJson(url);
    } catch (err) {
      if (err instanceof NeedsReauth) throw err;
      if (!(err instanceof SourceError) || transient(err)) {
        yield fail((err as Error).message);
        return { outcome: 'failed' };
      }
      const refusal = classifyRefusal(err);
      // A page kept from a cut-off run that the system no longer takes: from the start.
      if (resumed) {
        restart();
        continue;
      }
      if (!first) {
        if (refusal.kind === 'page-expired' && restarts < MAX_RESTARTS) {
          restarts++;
          restart();
          continue;
        }
        yield fail(`Page ${pages + 1} of the search ${q.key} was refused: ${refusal.diagnostics}`);
        return { outcome: 'failed' };
      }
      // The first page. An increment's prefix refused: `ge`, then none (the whole set).
      const kind = refusal.kind;
      if (prefix && (kind === 'unsupported-value' || kind === 'other') && !mentionsCount(refusal)) {
        prefix = prefix === 'gt' ? 'ge' : undefined;
        restart();
        continue;
      }
      // A page size refused: smaller (once without the system saying so: Blue Button takes 50 at
      // most); a `_count` that breaks the system's parameter combination (eCW): none. Kept only
      // when the smaller one is taken.
      const open = size > 0 && kind !== 'not-granted' && kind !== 'not-offered';
      const namesCount = mentionsCount(refusal) && (kind !== 'missing-parameter' || !!variantOf(q.key));
      const maybeSize = !triedSmaller && size > 50 && refusal.status === 400 && (kind === 'unsupported-value' || kind === 'other');
      if (open && (namesCount || maybeSize)) {
        size = kind === 'missing-parameter' ? 0 : size > 50 ? 50 : size > 10 ? 10 : 0;
        triedSmaller = true;
        restart();
        continue;
      }
      return { outcome: 'refused', refusal };
    }
    if (first) {
      // What got past the first page is what the system takes.
      if (size !== (q.paged ? x.pageSize() : 0)) await x.learnSize(size);
      if (q.increment && prefix !== q.increment.prefix) q.increment.onPrefix(prefix ?? 'none');
    }
    const bundle = answer as Bundle;
    if (!q.paged) {
      // A read: the resource itself.
      const r = answer as Resource;
      yield { kind: 'page', query: q.key, resources: r && typeof r === 'object' && r.resourceType && typeof r.id === 'string' ? [r] : [] };
      yield { kind: 'query-done', query: q.key, covers: q.covers, full: true, startedAt };
      return { outcome: 'done', matches: 1, dated: 0, older: 0 };
    }
    if (!bundle || typeof bundle !== 'object' || bundle.resourceType !== 'Bundle') {
      yield fail(
        `The search ${q.key} answered ${bundle && typeof bundle === 'object' ? `a ${String(bundle.resourceType ?? 'JSON object')}` : 'something'} instead of a Bundle.`,
      );
      return { outcome: 'failed' };
    }
    const resources: Resource[] = [];
    for (const e of Array.isArray(bundle.entry) ? bundle.entry : []) {
      const r = e?.resource;
      if (!r || typeof r !== 'object') continue;
      if (r.resourceType === 'OperationOutcome' || e.search?.mode === 'outcome') {
        for (const issue of (r as { issue?: OperationOutcomeIssue[] }).issue ?? []) yield { kind: 'warning', query: q.key, issue };
        continue;
      }
      if (e.search?.mode === 'include' || typeof r.resourceType !== 'string' || typeof r.id !== 'string') continue;
      resources.push(r);
      const lu = Date.parse(r.meta?.lastUpdated ?? '');
      if (Number.isFinite(lu)) {
        dated++;
        if (lu < sinceMs) older++;
      }
    }
    matches += resources.length;
    const link = (Array.isArray(bundle.link) ? bundle.link : []).find((l) => l?.relation === 'next')?.url;
    let next: string | undefined;
    if (typeof link === 'string' && link) {
      // Verbatim when absolute; a relative one against the page it came on.
      next = URL.canParse(link) ? link : URL.canParse(link, url) ? new URL(link, url).toString() : undefined;
      if (!next || new URL(next).origin !== origin) {
        yield { kind: 'page', query: q.key, resources };
        yield fail(`A next link of the search ${q.key} pointed away from the system's origin (${origin}); it was not followed.`, 'security');
        return { outcome: 'failed' };
      }
      if (visited.has(next)) {
        yield { kind: 'page', query: q.key, resources };
        yield fail(`The next links of the search ${q.key} go round in a loop; the search was stopped.`);
        return { outcome: 'failed' };
      }
    }
    yield { kind: 'page', query: q.key, resources, ...(next ? { next } : {}) };
    if (!next) {
      yield { kind: 'query-done', query: q.key, covers: q.covers, full: !prefix && !q.since, startedAt };
      return { outcome: 'done', matches, dated, older };
    }
    url = next;
    first = false;
    resumed = false;
  }
}
