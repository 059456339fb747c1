/**
 * Patient/[id]/$everything: the patient and every resource of its compartment that the token may
 * search, with what they reference (_include=*); `_since` keeps what changed after an instant,
 * `_type` some types; paged like a search (the next links carry `_lastUpdated=gt` for `_since`).
 * See: https://hl7.org/fhir/R4/operation-patient-everything.html
 */
import type { ResourceScope } from '../auth/scopes.ts';
import { allowed } from '../auth/scopes.ts';
import { parseTypes, type SearchResult } from '../search/engine.ts';
import { badRequest, fhirError } from './errors.ts';
import type { RequestContext } from './ports.ts';
import { dateParam } from './query-params.ts';
import { checkId, type FhirService } from './service.ts';

/** What `Patient/[id]/$everything` takes: its own parameters, the paging links' and the formats'. */
const EVERYTHING_PARAMS = new Set([
  '_since',
  '_type',
  '_count',
  '_page',
  '_include',
  '_lastUpdated',
  '_total',
  '_summary',
  '_elements',
  '_format',
  '_pretty',
]);

/** `query`: the request's query parameters (rewritten here); `grants`: the token's SMART scopes (absent: everything). */
export async function patientEverything(
  fhir: FhirService,
  ctx: RequestContext,
  id: string,
  query: URLSearchParams,
  grants?: ResourceScope[],
): Promise<SearchResult> {
  checkId(id);
  for (const k of query.keys()) {
    if (!EVERYTHING_PARAMS.has(k))
      throw badRequest(`Patient/$everything takes _since, _type and _count (and the paging links' parameters), not "${k.slice(0, 50)}".`);
  }
  let types = fhir.search.compartment.types();
  if (query.has('_type')) {
    const asked = new Set(parseTypes(query.getAll('_type').join(',')));
    types = types.filter((t) => asked.has(t));
  }
  // The types the token may search (filters applied to them by the engine, like what they include).
  if (grants) types = types.filter((t) => allowed(grants, 's', t) !== 'denied');
  if (!types.length) throw fhirError(403, 'forbidden', "The access token's scopes (or _type) leave no type of the patient's compartment to return.");
  const since = query.get('_since');
  if (since !== null) {
    query.append('_lastUpdated', `gt${dateParam(since, '_since')!.toISOString()}`);
    query.delete('_since');
  }
  query.set('_include', '*');
  return fhir.search.search(ctx, types, query, { compartment: { type: 'Patient', id }, path: `Patient/${id}/$everything`, grants });
}
