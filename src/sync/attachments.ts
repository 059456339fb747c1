/**
 * Note contents: the attachments of DocumentReference.content[].attachment and
 * DiagnosticReport.presentedForm[] that give a `url` and no `data` are fetched and stored as Binary
 * in the user's records, so that the mapper can point the attachment at the local copy.
 * - The url is resolved against the FHIR base (Epic and Oracle write `Binary/<id>`); one on another
 *   origin is never requested (the access token is not sent elsewhere).
 * - It is asked for with `Accept` = the attachment's contentType (Oracle refuses application/json;
 *   Epic answers application/fhir+json with a FHIR Binary, the content type with the bytes): either
 *   answer is taken, a FHIR Binary (its base64 data) or the raw bytes. A 406/415 is asked again as
 *   application/fhir+json.
 * - Past `maxBytes` (SYNC_ATTACHMENT_MAX_BYTES) it is recorded as too large and not fetched again.
 * - Stored with a deterministic id (mapper.ts localId of type Binary, from the source's Binary id,
 *   or the url when it names none), in a small transaction of its own with its record.
 * - One that cannot be fetched is recorded (trb_sync_attachment: tries, status, error) and tried again
 *   no sooner than its backoff: 15 minutes doubling to a day, and for a 403/404/410 (Epic's 59203,
 *   "not authorized to access the requested resource sub-type") 7 days doubling to 30.
 * - `budget.left` bounds the fetches of a run (SYNC_ATTACHMENTS_PER_RUN); the rest come next run.
 * See ehr-behaviour.md §1 Epic "DocumentReference / Binary", §2 Oracle "Binary / notes".
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Attachment, Binary, Resource } from '@medplum/fhirtypes';
import { writeResources, type BulkDeps } from '../fhir/bulk.ts';
import type { Scope } from '../fhir/ports.ts';
import { scrubAddresses } from '../net/outbound.ts';
import { inTransaction } from '../storage/transaction.ts';
import { localId, toLocal, type Origin } from './mapper.ts';
import { NeedsReauth, SourceError, TooLarge, type SourceSession } from './session.ts';
import * as statements from './sql/attachments.ts';

export interface AttachmentContext {
  session: SourceSession;
  pool: pg.Pool;
  deps: BulkDeps;
  scope: Scope;
  origin: Origin;
  connectionId: string;
  maxBytes: number;
  budget: { left: number };
}

/** Fetches of one call at once (the session's per-system cap applies besides). */
const PARALLEL = 4;
const FHIR_JSON = 'application/fhir+json';
/** Backoffs, in seconds: first and longest, for an ordinary failure and for a refusal of access. */
const BACKOFF = { baseS: 15 * 60, capS: 24 * 3600 };
const REFUSED_BACKOFF = { baseS: 7 * 24 * 3600, capS: 30 * 24 * 3600 };

/** An attachment to fetch: the url as written, where it resolves, and its stored Binary's id. */
interface Wanted {
  written: string[];
  url: string;
  contentType?: string;
  binaryId: string;
  hash: string;
}

/** The attachments of a resource that link their content instead of carrying it. */
function linkedAttachments(r: Resource): Attachment[] {
  const all =
    r.resourceType === 'DocumentReference'
      ? (r.content ?? []).map((c) => c.attachment)
      : r.resourceType === 'DiagnosticReport'
        ? (r.presentedForm ?? [])
        : [];
  return all.filter((a): a is Attachment & { url: string } => !!a && typeof a.url === 'string' && a.url !== '' && a.data === undefined);
}

/** Each distinct attachment on the system's origin, by the url it resolves to. */
function wantedOf(o: Origin, resources: Resource[]): Map<string, Wanted> {
  const base = `${o.base}/`;
  const origin = new URL(o.base).origin;
  const out = new Map<string, Wanted>();
  for (const r of resources) {
    for (const a of linkedAttachments(r)) {
      const written = a.url!;
      if (!URL.canParse(written, base)) continue;
      const u = new URL(written, base);
      if (u.origin !== origin || (u.protocol !== 'https:' && u.protocol !== 'http:')) continue;
      u.hash = '';
      const url = u.toString();
      const known = out.get(url);
      if (known) {
        if (!known.written.includes(written)) known.written.push(written);
        continue;
      }
      // The source's own Binary id when the url names one, so the local id is what a reference to it would map to.
      const m = url.startsWith(`${base}Binary/`) ? /^([A-Za-z0-9\-.]{1,64})$/.exec(url.slice(base.length + 'Binary/'.length)) : null;
      const sourceId = m ? m[1] : url;
      out.set(url, { written: [written], url, contentType: a.contentType, binaryId: sourceId, hash: createHash('sha256').update(url).digest('hex') });
    }
  }
  return out;
}

/** The content of an answer: a FHIR Binary's (JSON with resourceType Binary), or the bytes as they came. */
function contentOf(w: Wanted, answer: { contentType: string; bytes: Buffer }): { contentType: string; data: Buffer } {
  const media = answer.contentType.split(';')[0].trim().toLowerCase();
  if (/^application\/(fhir\+)?json$/.test(media) && media !== w.contentType?.toLowerCase()) {
    let binary: Partial<Binary> | undefined;
    try {
      binary = JSON.parse(answer.bytes.toString('utf8')) as Partial<Binary>;
    } catch {
      // Not JSON after all: the bytes as they came.
    }
    if (binary?.resourceType === 'Binary') {
      if (typeof binary.data !== 'string') throw new Error('the answer was a FHIR Binary without data');
      return { contentType: w.contentType ?? binary.contentType ?? 'application/octet-stream', data: Buffer.from(binary.data, 'base64') };
    }
  }
  return { contentType: w.contentType ?? (media || 'application/octet-stream'), data: answer.bytes };
}

/** Fetched with the attachment's type, else (406, 415) as a FHIR Binary. */
async function fetchContent(ctx: AttachmentContext, w: Wanted): Promise<{ contentType: string; data: Buffer }> {
  // A FHIR Binary's base64 is 4/3 of the content, and a little JSON around it.
  const cap = Math.ceil((ctx.maxBytes * 4) / 3) + 4096;
  const accept = w.contentType || FHIR_JSON;
  let answer: { contentType: string; bytes: Buffer };
  try {
    answer = await ctx.session.getBytes(w.url, accept, cap);
  } catch (err) {
    if (!(err instanceof SourceError) || (err.status !== 406 && err.status !== 415) || accept === FHIR_JSON) throw err;
    answer = await ctx.session.getBytes(w.url, FHIR_JSON, cap);
  }
  const content = contentOf(w, answer);
  if (content.data.length > ctx.maxBytes) throw new TooLarge(`${content.data.length} bytes, past the limit of ${ctx.maxBytes}`, content.data.length);
  return content;
}

/** Fetches and stores one attachment, or records why not; the local Binary id when it is stored. */
async function fetchOne(ctx: AttachmentContext, w: Wanted): Promise<string | undefined> {
  const id = localId(ctx.origin, 'Binary', w.binaryId);
  try {
    const content = await fetchContent(ctx, w);
    const binary = toLocal(
      ctx.origin,
      { resourceType: 'Binary', id: w.binaryId, contentType: content.contentType, data: content.data.toString('base64') },
      () => false,
    );
    await inTransaction(ctx.pool, async (c) => {
      await writeResources(ctx.deps, c, ctx.scope, [{ type: 'Binary', id, resource: binary }]);
      await c.query(statements.attachmentStored(ctx.connectionId, w.hash, id, content.data.length));
    });
    return id;
  } catch (err) {
    if (err instanceof NeedsReauth) throw err;
    const why = scrubAddresses((err as Error).message).slice(0, 500);
    if (err instanceof TooLarge) {
      await ctx.pool.query(statements.attachmentFailed(ctx.connectionId, w.hash, 'too-large', null, why, BACKOFF, err.size ?? null));
    } else {
      const status = err instanceof SourceError ? err.status : null;
      const refused = status === 403 || status === 404 || status === 410;
      await ctx.pool.query(statements.attachmentFailed(ctx.connectionId, w.hash, 'failed', status, why, refused ? REFUSED_BACKOFF : BACKOFF, null));
    }
    return undefined;
  }
}

/** The local `Binary/<id>` of each attachment of these resources that is stored (fetching those not stored yet, within budget); keyed by the attachment url as written in the source resource. */
export async function prepareAttachments(ctx: AttachmentContext, resources: Resource[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const wanted = wantedOf(ctx.origin, resources);
  if (!wanted.size) return out;
  const byHash = new Map([...wanted.values()].map((w) => [w.hash, w]));
  const { rows } = await ctx.pool.query<{ url_hash: string; status: string; binary_id: string | null; due: boolean | null }>(
    statements.attachmentState(ctx.connectionId, [...byHash.keys()]),
  );
  const state = new Map(rows.map((r) => [r.url_hash, r]));
  const put = (w: Wanted, binaryId: string) => {
    for (const written of w.written) out.set(written, `Binary/${binaryId}`);
  };
  const todo: Wanted[] = [];
  for (const w of wanted.values()) {
    const s = state.get(w.hash);
    if (s?.status === 'stored' && s.binary_id) put(w, s.binary_id);
    else if (s?.status === 'too-large' || (s?.status === 'failed' && !s.due)) continue;
    else if (ctx.budget.left > 0) {
      ctx.budget.left--;
      todo.push(w);
    }
  }
  // A few at once; a NeedsReauth ends them all.
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const w = todo[next++];
      const id = await fetchOne(ctx, w);
      if (id) put(w, id);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, todo.length) }, worker));
  return out;
}
