/**
 * A page of search results as a searchset Bundle, and the links between pages.
 * See: https://hl7.org/fhir/R4/bundle.html#searchset
 */
import type { Bundle, BundleEntry, OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import type { RequestContext } from '../fhir/ports.ts';
import { applySummary, type SummaryMode } from '../fhir/summary.ts';
import type { StoredVersion } from '../storage/repository.ts';

/**
 * A page of results, as a Bundle object or as JSON text. The text is spliced from the stored JSON of
 * each resource when no `_summary` / `_elements` reshapes them: no parse and re-serialization of
 * every resource on the way out.
 */
export class SearchResult {
  private readonly baseUrl: string;
  private readonly head: Bundle;
  private readonly entries: { v: StoredVersion; mode: 'match' | 'include' }[];
  private readonly warnings: OperationOutcomeIssue[];
  private readonly summary: SummaryMode | undefined;
  private readonly elements: string[] | undefined;

  constructor(
    baseUrl: string,
    head: Bundle,
    entries: { v: StoredVersion; mode: 'match' | 'include' }[],
    warnings: OperationOutcomeIssue[],
    summary: SummaryMode | undefined,
    elements: string[] | undefined,
  ) {
    this.baseUrl = baseUrl;
    this.head = head;
    this.entries = entries;
    this.warnings = warnings;
    this.summary = summary;
    this.elements = elements;
  }

  private outcome(): BundleEntry | undefined {
    return this.warnings.length ? { resource: { resourceType: 'OperationOutcome', issue: this.warnings }, search: { mode: 'outcome' } } : undefined;
  }

  bundle(): Bundle {
    const entry: BundleEntry[] = this.entries.map(({ v, mode }) => ({
      fullUrl: `${this.baseUrl}/${v.type}/${v.id}`,
      resource: applySummary(JSON.parse(v.json!) as Resource, this.summary, this.elements),
      search: { mode },
    }));
    const outcome = this.outcome();
    if (outcome) entry.push(outcome);
    return entry.length ? { ...this.head, entry } : { ...this.head };
  }

  json(): string {
    if (this.summary || this.elements) return JSON.stringify(this.bundle());
    const parts = this.entries.map(
      ({ v, mode }) => `{"fullUrl":${JSON.stringify(`${this.baseUrl}/${v.type}/${v.id}`)},"resource":${v.json},"search":{"mode":"${mode}"}}`,
    );
    const outcome = this.outcome();
    if (outcome) parts.push(JSON.stringify(outcome));
    const head = JSON.stringify(this.head);
    return parts.length ? `${head.slice(0, -1)},"entry":[${parts.join(',')}]}` : head;
  }
}

/** The URL of a page: the search path and query, with `extra` parameters set (the paging ones). */
export function pageUrl(ctx: RequestContext, path: string, query: URLSearchParams, extra: Record<string, string> = {}): string {
  const q = new URLSearchParams(query);
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  const qs = q.toString();
  return `${ctx.baseUrl}${path ? `/${path}` : ''}${qs ? `?${qs}` : ''}`;
}
