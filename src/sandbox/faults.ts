/**
 * A sandbox system's fault switches, for tests of what connects to it (the sync): the next N
 * requests to its FHIR base fail (500, 503, or 429 with Retry-After), answer slowly, or carry a
 * malformed resource. They are kept in the memory of the process serving the system, and each
 * counts down as requests use it up. (Expiring tokens now and revoking refresh tokens act on the
 * database at once: see plugins/sandbox.ts.)
 */

export interface FaultSettings {
  /** Fail the next `count` requests with `status`; `retryAfter` seconds are sent with a 429 or 503. */
  fail?: { count: number; status: 500 | 503 | 429; retryAfter?: number };
  /** Answer the next `count` requests `ms` late. */
  slow?: { count: number; ms: number };
  /** Corrupt a resource in the next `count` successful JSON answers. */
  malformed?: { count: number };
}

/** What to do with one request: fail it, delay it, and/or corrupt its answer. */
export interface FaultPlan {
  fail?: { status: number; retryAfter?: number };
  delayMs: number;
  malform: boolean;
}

const int = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** The settings in a request body, or a string saying what is wrong with it. */
export function parseFaults(body: unknown): FaultSettings | string {
  if (!body || typeof body !== 'object' || Array.isArray(body))
    return 'The body is a JSON object: {"fail": {...}, "slow": {...}, "malformed": {...}}.';
  const b = body as Record<string, Record<string, unknown> | undefined>;
  const unknown = Object.keys(b).filter((k) => !['fail', 'slow', 'malformed'].includes(k));
  if (unknown.length) return `Unknown switches: ${unknown.join(', ').slice(0, 100)}; they are fail, slow and malformed.`;
  const out: FaultSettings = {};
  if (b.fail) {
    const { count, status, retryAfter } = b.fail;
    if (!int(count, 1, 10_000) || !(status === 500 || status === 503 || status === 429) || (retryAfter !== undefined && !int(retryAfter, 0, 3600))) {
      return 'fail is {"count": 1 to 10000, "status": 500, 503 or 429, "retryAfter": seconds (optional)}.';
    }
    out.fail = { count, status, ...(retryAfter !== undefined ? { retryAfter } : {}) };
  }
  if (b.slow) {
    const { count, ms } = b.slow;
    if (!int(count, 1, 10_000) || !int(ms, 1, 120_000)) return 'slow is {"count": 1 to 10000, "ms": 1 to 120000}.';
    out.slow = { count, ms };
  }
  if (b.malformed) {
    if (!int(b.malformed.count, 1, 10_000)) return 'malformed is {"count": 1 to 10000}.';
    out.malformed = { count: b.malformed.count };
  }
  return out;
}

export class Faults {
  private settings: FaultSettings = {};

  set(s: FaultSettings): void {
    this.settings = structuredClone(s);
  }

  clear(): void {
    this.settings = {};
  }

  /** What is left of the switches. */
  get current(): FaultSettings {
    return structuredClone(this.settings);
  }

  /** Takes one request's share of the switches. */
  next(): FaultPlan {
    const s = this.settings;
    const plan: FaultPlan = { delayMs: 0, malform: false };
    if (s.slow && s.slow.count > 0) {
      plan.delayMs = s.slow.ms;
      if (--s.slow.count === 0) delete s.slow;
    }
    if (s.fail && s.fail.count > 0) {
      plan.fail = { status: s.fail.status, retryAfter: s.fail.retryAfter };
      if (--s.fail.count === 0) delete s.fail;
      return plan;
    }
    if (s.malformed && s.malformed.count > 0) {
      plan.malform = true;
      if (--s.malformed.count === 0) delete s.malformed;
    }
    return plan;
  }
}

/**
 * A FHIR JSON answer with one resource broken (its first resource, or a Bundle's first entry): a
 * status that is an object and an id that is not an id. Valid JSON, invalid FHIR: what a sync
 * must record and skip.
 */
export function malform(payload: string): string {
  let doc: { resourceType?: string; entry?: { resource?: Record<string, unknown> }[] } & Record<string, unknown>;
  try {
    doc = JSON.parse(payload);
  } catch {
    return payload;
  }
  const target = doc.resourceType === 'Bundle' ? doc.entry?.find((e) => e.resource)?.resource : doc;
  if (!target) return payload;
  target.status = { broken: true };
  target.id = `${String(target.id ?? '')} not an id`;
  return JSON.stringify(doc);
}
