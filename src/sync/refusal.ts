/**
 * What a system's refusal of a request means, read from its OperationOutcome (issue code, the
 * vendor's own code in details.coding, the text) and only then from the HTTP status: vendors refuse
 * the same thing with different statuses (a missing parameter is a 400 at Epic, NextGen and eCW, a
 * 403 at athena, a 404 for NextGen's CarePlan), and the same status means different things (an Epic
 * 403 without a body is a type the app is not scoped for; athena's 403 `forbidden` asks for `intent`).
 * - `missing-parameter`: the search needs more parameters (a category, an intent, a status): retry
 *   with the combinations it needs (src/sync/plan.ts).
 * - `unsupported-value`: a value or prefix the system does not take (an unknown category, `gt` on
 *   Oracle's MedicationRequest, a `_count` too large).
 * - `not-granted`: the app or the person may not see it (unscoped types, suppressed categories).
 * - `not-offered`: the system does not serve it (404 pages, not-supported, not implemented).
 * - `page-expired`: a page token or cached search is gone: the search starts again.
 * - `server-error`: 5xx or no answer, after the session's retries: the next run tries again.
 * See: /work/shared/ehr-behaviour.md, "What breaks a naive sync" 1-3, 7.
 */

export type RefusalKind = 'missing-parameter' | 'unsupported-value' | 'not-granted' | 'not-offered' | 'page-expired' | 'server-error' | 'other';

export interface Refusal {
  kind: RefusalKind;
  /** The HTTP status (0: no answer). */
  status: number;
  /** The OperationOutcome issue's code (`required`, `suppressed`, ...), when there was one. */
  code?: string;
  /** What the system said, for the app to read: the issue's text and the vendor's code, or what the answer was. */
  diagnostics: string;
}

/** The parts of a refused request that classify it (a SourceError of src/sync/session.ts has them). */
export interface RefusedAnswer {
  status: number;
  body?: unknown;
  contentType?: string;
  message?: string;
}

interface Issue {
  severity?: string;
  code?: string;
  diagnostics?: string;
  details?: { text?: string; coding?: { code?: string; display?: string }[] };
}

/** Vendor codes with a fixed meaning (Epic's, ehr-behaviour.md §1). */
const VENDOR_CODES: Record<string, RefusalKind> = {
  '59108': 'missing-parameter', // "Must have either code or category."
  '59159': 'missing-parameter', // CarePlan without category
  '59109': 'unsupported-value', // "Invalid category"
  '59204': 'not-granted', // category suppressed for the app
  '59203': 'not-granted', // Binary sub-type not authorized
  '4118': 'not-granted', // user not authorized
  '4113': 'page-expired', // "Session ID for cached search results has expired"
};

// Texts, as vendors write them (ehr-behaviour.md §1, §3, §5, §6, §9).
const MISSING = [
  /must have either code or category/i, // Epic
  /required parameter combinations?/i, // athena 403 forbidden
  /does not know how to handle .*(operation|parameter)/i, // eCW (HAPI)
  /must have ['"]?code['"]? or ['"]?category/i, // NextGen Observation
  /valid care ?plan category not present/i, // NextGen CarePlan (404)
  /\b(parameter|category|intent|status|code)\b.*\b(is |are )?(required|must be (provided|supplied|specified))/i,
  /\bmissing (a )?(required )?(search )?param/i,
];
const EXPIRED = [
  /session id .*expired/i,
  /\b(page|session|cursor|context|continuation)\b.*\b(expired|no longer valid|not found|unknown)/i,
  /\bexpired\b.*\b(page|session|cursor|search)/i,
];
const NOT_GRANTED = [/not authori[sz]ed/i, /\baccess\b.*\bdenied\b/i, /denied by user/i, /insufficient scope/i, /not (permitted|allowed) to/i];
const NOT_OFFERED = [/not ?implemented/i, /\bnot supported\b/i, /unknown resource( type)?/i, /unsupported resource/i, /no such resource/i];
const BAD_VALUE = [
  /invalid (value|category|prefix|date|comparator|parameter value)/i,
  /\b(prefix|comparator)\b/i,
  /must (start|begin) with/i,
  /not a valid/i,
  /out of range/i,
  /\b_count\b/i,
  /unknown (category|code|value)/i,
];

const any = (res: RegExp[], text: string) => res.some((re) => re.test(text));

function issuesOf(body: unknown): Issue[] {
  const b = body as { resourceType?: string; issue?: unknown } | undefined;
  return b && typeof b === 'object' && b.resourceType === 'OperationOutcome' && Array.isArray(b.issue) ? (b.issue as Issue[]) : [];
}

const textOf = (i: Issue) =>
  [i.diagnostics, i.details?.text, ...(i.details?.coding ?? []).map((c) => c.display)]
    .filter((s): s is string => typeof s === 'string' && s.length > 0)
    .join(' ');

/** What the system said, one line, at most 500 characters. */
function describe(a: RefusedAnswer, issue: Issue | undefined): string {
  if (issue) {
    const text = textOf(issue) || issue.code || 'no text';
    const codes = (issue.details?.coding ?? [])
      .map((c) => c.code)
      .filter((c): c is string => typeof c === 'string' && /^[\w.-]{1,20}$/.test(c) && !text.includes(c));
    return `${text}${codes.length ? ` (${codes.join(', ')})` : ''}`.replace(/\s+/g, ' ').slice(0, 500);
  }
  if (a.status === 0) return (a.message ?? 'no answer').slice(0, 500);
  const type = a.contentType?.split(';')[0].trim();
  const html = type === 'text/html' || (typeof a.body === 'string' && /^\s*<(!doctype|html)/i.test(a.body));
  if (html) return `HTTP ${a.status}, an HTML page instead of an OperationOutcome`;
  if (typeof a.body === 'string' && a.body.trim()) return `HTTP ${a.status}: ${a.body.replace(/\s+/g, ' ').trim().slice(0, 300)}`;
  return `HTTP ${a.status}${a.body === undefined || a.body === '' ? ', no body' : ''}`;
}

/**
 * The kind of a refusal. Reads every issue of the OperationOutcome (the first error or fatal one
 * names it), then the status: 5xx and no answer are `server-error` whatever their body says (an
 * Oracle whole-search 500 is `fatal/required`, but no parameter would help).
 */
export function classifyRefusal(err: RefusedAnswer): Refusal {
  const issues = issuesOf(err.body);
  const main = issues.find((i) => i.severity === 'error' || i.severity === 'fatal') ?? issues[0];
  const status = err.status;
  const out = (kind: RefusalKind): Refusal => ({ kind, status, ...(main?.code ? { code: main.code } : {}), diagnostics: describe(err, main) });
  if (status === 0 || status >= 500) return out('server-error');

  // The vendor's own code is the surest sign.
  for (const i of issues) for (const c of i.details?.coding ?? []) if (c.code && VENDOR_CODES[c.code]) return out(VENDOR_CODES[c.code]);

  const codes = new Set(issues.map((i) => i.code));
  const text = issues.map(textOf).join(' \n ') || (typeof err.body === 'string' && !/^\s*</.test(err.body) ? err.body : '');
  if (status === 410 || any(EXPIRED, text)) return out('page-expired');
  if (codes.has('required') || any(MISSING, text)) return out('missing-parameter');
  if (codes.has('business-rule') && status < 500 && !any(NOT_GRANTED, text)) return out('missing-parameter');
  if (codes.has('suppressed') || codes.has('security') || codes.has('login') || any(NOT_GRANTED, text)) return out('not-granted');
  if (codes.has('forbidden')) return out('not-granted');
  if (codes.has('not-supported') && !any(BAD_VALUE, text)) return out('not-offered');
  if (
    codes.has('value') ||
    codes.has('not-supported') ||
    codes.has('invalid') ||
    codes.has('structure') ||
    codes.has('processing') ||
    codes.has('too-costly') ||
    codes.has('invariant')
  ) {
    if (any(NOT_OFFERED, text) && !any(BAD_VALUE, text)) return out('not-offered');
    return codes.has('value') || any(BAD_VALUE, text) ? out('unsupported-value') : out('other');
  }
  if (any(NOT_OFFERED, text) || codes.has('not-found')) return out('not-offered');
  // No OperationOutcome to go by: the status alone.
  if (status === 403) return out('not-granted');
  if (status === 404 || status === 405 || status === 501) return out('not-offered');
  if (status === 400 && any(BAD_VALUE, text)) return out('unsupported-value');
  return out('other');
}
