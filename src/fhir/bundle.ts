/**
 * batch and transaction Bundles. A transaction is one database transaction, processed in the
 * spec's order (DELETE, POST, PUT/PATCH, GET), with urn:uuid and conditional references
 * resolved; a batch processes each entry on its own.
 * See: https://hl7.org/fhir/R4/http.html#transaction
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Bundle, BundleEntry, OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { WriteItem } from '../storage/repository.ts';
import { badRequest, FhirError, gone, notFound, preconditionFailed } from './errors.ts';
import type { RequestContext } from './ports.ts';
import { applyJsonPatch, checkId, checkIfMatch, checkType, parseVersionTag, type FhirService } from './service.ts';

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
const ORDER: Record<Method, number> = { DELETE: 0, POST: 1, PUT: 2, PATCH: 2, GET: 3, HEAD: 3 };

export interface EntryResponse {
  status: string;
  location?: string;
  etag?: string;
  lastModified?: string;
  outcome?: OperationOutcome;
}

/** Executes a GET entry (read, vread, search, history); supplied by the HTTP layer's router. */
export type EntryReader = (ctx: RequestContext, url: string, client?: pg.PoolClient) => Promise<{ status: number; body: Resource }>;

interface ParsedEntry {
  index: number;
  method: Method;
  url: string;
  type: string;
  id?: string;
  query?: string;
  entry: BundleEntry;
}

function parseEntry(entry: BundleEntry, index: number): ParsedEntry {
  const req = entry.request;
  if (!req || typeof req !== 'object') throw badRequest(`Entry ${index} has no request.`, [`Bundle.entry[${index}].request`]);
  const method = req.method as Method;
  if (!(method in ORDER))
    throw badRequest(`Entry ${index} has an unknown request.method "${String(req.method)}".`, [`Bundle.entry[${index}].request.method`]);
  if (typeof req.url !== 'string' || !req.url) throw badRequest(`Entry ${index} has no request.url.`, [`Bundle.entry[${index}].request.url`]);
  const url = req.url.replace(/^\//, '');
  const [path, query] = url.split('?', 2);
  const parts = path.split('/');
  const out: ParsedEntry = { index, method, url, type: parts[0], entry, query };
  if (method !== 'GET' && method !== 'HEAD') {
    checkType(out.type);
    if (parts.length > 2) throw badRequest(`Entry ${index}: request.url "${req.url}" is not [type] or [type]/[id].`);
    if (parts[1]) {
      checkId(parts[1]);
      out.id = parts[1];
    }
    if (method === 'POST' && out.id) throw badRequest(`Entry ${index}: POST goes to [type], not [type]/[id].`);
    if ((method === 'PUT' || method === 'PATCH' || method === 'DELETE') && !out.id && !query) {
      throw badRequest(`Entry ${index}: ${method} needs [type]/[id] or a search condition in request.url.`);
    }
    if ((method === 'POST' || method === 'PUT') && (!entry.resource || entry.resource.resourceType !== out.type)) {
      throw badRequest(`Entry ${index}: the resource must be a ${out.type}.`, [`Bundle.entry[${index}].resource`]);
    }
  }
  return out;
}

function etag(version: number): string {
  return `W/"${version}"`;
}

/** Replaces every string equal to a key of `map` (references, and urn:uuid uses elsewhere). */
function rewriteReferences(value: unknown, map: Map<string, string>): unknown {
  if (typeof value === 'string') return map.get(value) ?? value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = rewriteReferences(value[i], map);
    return value;
  }
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    for (const k of Object.keys(o)) o[k] = rewriteReferences(o[k], map);
  }
  return value;
}

/** Conditional references ("Patient?identifier=x|y") found anywhere in the resource. */
function collectConditionalRefs(value: unknown, out: Set<string>): void {
  if (Array.isArray(value)) for (const v of value) collectConditionalRefs(v, out);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === 'reference' && typeof v === 'string' && /^[A-Z][A-Za-z]+\?/.test(v)) out.add(v);
      else collectConditionalRefs(v, out);
    }
  }
}

export async function processTransaction(svc: FhirService, ctx: RequestContext, bundle: Bundle, read: EntryReader): Promise<Bundle> {
  const entries = (bundle.entry ?? []).map(parseEntry);
  return svc.transaction(async (client) => {
    const refMap = new Map<string, string>();
    const responses: EntryResponse[] = new Array(entries.length);
    const seen = new Set<string>();
    const claim = (e: ParsedEntry, key: string) => {
      if (seen.has(key)) throw badRequest(`Entry ${e.index} touches ${key}, which another entry of this transaction touches too.`);
      seen.add(key);
    };
    const mapFullUrl = (e: ParsedEntry, target: string) => {
      if (e.entry.fullUrl) refMap.set(e.entry.fullUrl, target);
    };

    // 1. Decide the target of every write: ids for creates, matches for conditional writes.
    const plan: { e: ParsedEntry; id: string; skip?: boolean }[] = [];
    for (const e of [...entries].sort((a, b) => ORDER[a.method] - ORDER[b.method] || a.index - b.index)) {
      if (e.method === 'GET' || e.method === 'HEAD') continue;
      let id = e.id;
      let skip = false;
      if (e.method === 'POST') {
        const cond = e.entry.request?.ifNoneExist;
        if (cond) {
          const found = await svc.match(client, ctx, e.type, cond);
          if (found.length > 1) throw preconditionFailed(`Entry ${e.index}: ifNoneExist matched more than one ${e.type}.`);
          if (found.length === 1) {
            id = found[0].id;
            skip = true;
          }
        }
        id ??= randomUUID();
      } else if (!id && e.query !== undefined) {
        const found = await svc.match(client, ctx, e.type, e.query);
        if (found.length > 1) throw preconditionFailed(`Entry ${e.index}: the condition matched more than one ${e.type}.`);
        if (found.length === 1) id = found[0].id;
        else if (e.method === 'DELETE') skip = true;
        else if (e.method === 'PATCH') throw notFound(`Entry ${e.index}: no ${e.type} matches the patch condition.`);
        else id = (e.entry.resource?.id as string | undefined) ?? randomUUID();
      }
      if (id) {
        claim(e, `${e.type}/${id}`);
        mapFullUrl(e, `${e.type}/${id}`);
      }
      plan.push({ e, id: id ?? '', skip });
    }

    // 2. Conditional references resolve to exactly one match.
    const conditional = new Set<string>();
    for (const p of plan) if (p.e.entry.resource) collectConditionalRefs(p.e.entry.resource, conditional);
    for (const ref of conditional) {
      const [type, query] = ref.split('?', 2);
      checkType(type);
      const found = await svc.match(client, ctx, type, query);
      if (found.length !== 1)
        throw preconditionFailed(
          `The conditional reference "${ref}" matched ${found.length > 1 ? 'more than one' : 'no'} resource; it must match exactly one.`,
        );
      refMap.set(ref, `${type}/${found[0].id}`);
    }

    // 3. Lock what exists, build every version, write them in one go.
    // A POST's id is a new UUID: nothing to lock. The others may exist.
    const existing = plan.filter((p) => !p.skip && p.e.method !== 'POST');
    const locked = await svc.repo.lockCurrent(
      client,
      ctx,
      existing.map((p) => ({ type: p.e.type, id: p.id })),
    );
    // A PUT that creates takes its id for the app (no other owner may hold it).
    await svc.repo.claimIds(
      client,
      ctx,
      existing.filter((p) => p.e.method === 'PUT' && !locked.has(`${p.e.type}/${p.id}`)).map((p) => ({ type: p.e.type, id: p.id })),
    );
    // A DELETE of what does not exist (or is not the caller's) writes nothing, as a plain DELETE.
    for (const p of existing) if (p.e.method === 'DELETE' && !locked.has(`${p.e.type}/${p.id}`)) p.skip = true;
    const writes = plan.filter((p) => !p.skip);
    const items: WriteItem[] = [];
    for (const p of writes) {
      const { e, id } = p;
      const existing = locked.get(`${e.type}/${id}`) ?? null;
      const ifMatch = e.entry.request?.ifMatch;
      const wanted = ifMatch ? parseVersionTag(ifMatch) : undefined;
      if (e.method === 'DELETE') {
        items.push({ type: e.type, id, existing, resource: null });
        continue;
      }
      checkIfMatch(e.type, id, existing, wanted);
      let resource: Resource;
      if (e.method === 'PATCH') {
        if (!existing) throw notFound(`Entry ${e.index}: ${e.type}/${id} is not known.`);
        if (existing.deleted) throw gone(`Entry ${e.index}: ${e.type}/${id} was deleted.`);
        const current = await svc.repo.readCurrent(client, ctx, e.type, id);
        const body = e.entry.resource as unknown as { resourceType?: string; data?: string };
        // A FHIR transaction carries a JSON Patch as a Binary whose data is the base64 patch.
        let ops: unknown = body;
        if (body?.resourceType === 'Binary' && typeof body.data === 'string') {
          try {
            ops = JSON.parse(Buffer.from(body.data, 'base64').toString('utf8'));
          } catch {
            throw badRequest(`Entry ${e.index}: the Binary's data is not a base64 JSON Patch.`, [`Bundle.entry[${e.index}].resource.data`]);
          }
        }
        resource = applyJsonPatch(JSON.parse(current!.json!), ops);
      } else {
        // The Bundle was parsed for this request alone, so its resources may be rewritten in place.
        const body = e.entry.resource as Resource;
        if (e.method === 'PUT' && e.id && body.id !== undefined && body.id !== e.id) {
          throw badRequest(`Entry ${e.index}: the resource's id "${body.id}" differs from request.url's "${e.id}".`);
        }
        resource = { ...(rewriteReferences(body, refMap) as Resource), id };
      }
      try {
        items.push({ type: e.type, id, existing, ...svc.prepare(ctx, resource) });
      } catch (err) {
        if (err instanceof FhirError) {
          for (const issue of err.outcome.issue ?? [])
            issue.expression = issue.expression?.map((x) => `Bundle.entry[${e.index}].resource.${x.replace(/^[A-Za-z]+\.?/, '')}`.replace(/\.$/, ''));
        }
        throw err;
      }
    }
    const results = await svc.writeItems(client, ctx, items);

    // 4. Responses, in the order of the entries.
    const written = new Map<number, { type: string; id: string; version: number; created: boolean; lastUpdated: Date }>();
    writes.forEach((p, i) => {
      const ex = items[i].existing;
      written.set(p.e.index, {
        type: p.e.type,
        id: p.id,
        version: results[i].version,
        created: !ex || ex.deleted,
        lastUpdated: results[i].lastUpdated,
      });
    });
    for (const p of plan) {
      const w = written.get(p.e.index);
      if (p.skip) {
        responses[p.e.index] = p.e.method === 'DELETE' ? { status: '204 No Content' } : { status: '200 OK', location: `${p.e.type}/${p.id}` };
      } else if (p.e.method === 'DELETE') {
        responses[p.e.index] = { status: '204 No Content' };
      } else if (w) {
        responses[p.e.index] = {
          status: w.created && p.e.method !== 'PATCH' ? '201 Created' : '200 OK',
          location: `${w.type}/${w.id}/_history/${w.version}`,
          etag: etag(w.version),
          lastModified: w.lastUpdated.toISOString(),
        };
      }
    }
    const out: BundleEntry[] = entries.map((e) => ({ response: responses[e.index] }) as BundleEntry);
    for (const e of entries) {
      if (e.method === 'GET' || e.method === 'HEAD') {
        const r = await read(ctx, e.url, client);
        out[e.index] = { resource: e.method === 'GET' ? r.body : undefined, response: { status: String(r.status) } } as BundleEntry;
      }
    }
    return { resourceType: 'Bundle', type: 'transaction-response', entry: out } as Bundle;
  });
}

/** Each entry on its own; a failed entry answers its error and the others go on. */
export async function processBatch(svc: FhirService, ctx: RequestContext, bundle: Bundle, read: EntryReader): Promise<Bundle> {
  const out: BundleEntry[] = [];
  for (const [index, entry] of (bundle.entry ?? []).entries()) {
    try {
      const e = parseEntry(entry, index);
      const one: Bundle = { resourceType: 'Bundle', type: 'transaction', entry: [entry] };
      if (e.method === 'GET' || e.method === 'HEAD') {
        const r = await read(ctx, e.url);
        out.push({ resource: r.body, response: { status: String(r.status) } } as BundleEntry);
      } else {
        const res = await processTransaction(svc, ctx, one, read);
        out.push(res.entry![0]);
      }
    } catch (err) {
      if (!(err instanceof FhirError)) throw err;
      // The entry ran as entry 0 of a one-entry transaction: name its place in the batch instead.
      for (const issue of err.outcome.issue ?? []) {
        issue.expression = issue.expression?.map((x) => x.replace(/^Bundle\.entry\[0\]/, `Bundle.entry[${index}]`));
        if (issue.diagnostics) issue.diagnostics = issue.diagnostics.replace(/^Entry 0\b/, `Entry ${index}`);
      }
      out.push({ response: { status: String(err.status), outcome: err.outcome } } as BundleEntry);
    }
  }
  return { resourceType: 'Bundle', type: 'batch-response', entry: out } as Bundle;
}

export function checkBundle(body: unknown): Bundle {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest('The body must be a Bundle as a JSON object.');
  const b = body as Bundle;
  if (b.resourceType !== 'Bundle') throw badRequest(`POST to the base takes a Bundle, not a ${String(b.resourceType)}.`, ['resourceType']);
  if (b.type !== 'batch' && b.type !== 'transaction')
    throw badRequest(`Bundle.type must be batch or transaction to be processed; it is "${String(b.type)}".`, ['Bundle.type']);
  if (b.entry !== undefined && !Array.isArray(b.entry)) throw badRequest('Bundle.entry must be an array.', ['Bundle.entry']);
  for (const [i, e] of (b.entry ?? []).entries()) {
    if (!e || typeof e !== 'object' || Array.isArray(e)) throw badRequest(`Bundle.entry[${i}] must be an object.`, [`Bundle.entry[${i}]`]);
  }
  return b;
}

/** A batch or transaction posted to the base: its response Bundle, with the entries' locations made absolute. */
export async function processBundle(svc: FhirService, ctx: RequestContext, body: unknown, read: EntryReader): Promise<Bundle> {
  const bundle = checkBundle(body);
  const out = bundle.type === 'transaction' ? await processTransaction(svc, ctx, bundle, read) : await processBatch(svc, ctx, bundle, read);
  for (const e of out.entry ?? []) {
    if (e.response?.location && !/^https?:/.test(e.response.location)) e.response.location = `${ctx.baseUrl}/${e.response.location}`;
  }
  return out;
}
