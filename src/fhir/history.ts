/**
 * The history interactions (of an instance, a type, the whole system) as history Bundles: their
 * parameters, their entries (a delete as a request and a 410 response), paged by `_offset`.
 * See: https://hl7.org/fhir/R4/http.html#history
 */
import type { Bundle, BundleEntry, Resource } from '@medplum/fhirtypes';
import type { ResourceScope } from '../auth/scopes.ts';
import type { StoredVersion } from '../storage/repository.ts';
import { historyTypes } from './access.ts';
import type { RequestContext } from './ports.ts';
import { dateParam, intParam, single } from './query-params.ts';
import { etag, type FhirService } from './service.ts';

export interface HistoryRequest {
  type?: string;
  id?: string;
  /** The parsed query string. */
  query: Record<string, string | string[] | undefined>;
  /** The request's query string as sent, with its `?` ('' for none): the self link keeps it. */
  search: string;
  /** The token's SMART scopes (absent: everything). */
  grants?: ResourceScope[];
}

export function historyBundle(baseUrl: string, total: number, entries: StoredVersion[], self: string): Bundle {
  return {
    resourceType: 'Bundle',
    type: 'history',
    total,
    link: [{ relation: 'self', url: self }],
    entry: entries.map((v) => {
      const fullUrl = `${baseUrl}/${v.type}/${v.id}`;
      if (v.deleted) {
        return {
          fullUrl,
          request: { method: 'DELETE', url: `${v.type}/${v.id}` },
          response: { status: '410 Gone', lastModified: v.lastUpdated.toISOString() },
        };
      }
      return {
        fullUrl,
        resource: JSON.parse(v.json!) as Resource,
        request: { method: v.version === 1 ? 'POST' : 'PUT', url: v.version === 1 ? v.type : `${v.type}/${v.id}` },
        response: { status: v.version === 1 ? '201 Created' : '200 OK', etag: etag(v.version), lastModified: v.lastUpdated.toISOString() },
      } as BundleEntry;
    }),
  };
}

/** `_history` of a resource, a type or (without either) the whole scope, newest first. */
export async function history(fhir: FhirService, ctx: RequestContext, r: HistoryRequest): Promise<Bundle> {
  const { type, id, query: q } = r;
  const count = intParam(single(q._count, '_count'), 20, 1, 1000, '_count');
  const offset = intParam(single(q._offset, '_offset'), 0, 0, 1_000_000, '_offset');
  const since = dateParam(single(q._since, '_since'), '_since');
  const at = dateParam(single(q._at, '_at'), '_at');
  const { total, entries } = await fhir.history(ctx, { type, id, since, at, count, offset, types: type ? undefined : historyTypes(r.grants) });
  const path = [type, id, '_history'].filter(Boolean).join('/');
  const self = `${ctx.baseUrl}/${path}${r.search}`;
  const bundle = historyBundle(ctx.baseUrl, total, entries, self);
  if (offset + count < total) {
    const next = new URLSearchParams(q as Record<string, string>);
    next.set('_offset', String(offset + count));
    next.set('_count', String(count));
    bundle.link!.push({ relation: 'next', url: `${ctx.baseUrl}/${path}?${next}` });
  }
  return bundle;
}
