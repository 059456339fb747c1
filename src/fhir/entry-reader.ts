/**
 * The GET entries of a batch or transaction: a relative URL that is a read, a vread or a search,
 * run in the Bundle's transaction when there is one (so it sees the Bundle's own writes).
 * See: https://hl7.org/fhir/R4/http.html#transaction
 */
import type pg from 'pg';
import type { ResourceScope } from '../auth/scopes.ts';
import type { EntryReader } from './bundle.ts';
import { badRequest } from './errors.ts';
import type { RequestContext } from './ports.ts';
import { checkType, type FhirService } from './service.ts';

/** `grantsOf`: the SMART scopes of the request that sent the Bundle (its searches take them along). */
export function entryReader(fhir: FhirService, grantsOf: (ctx: RequestContext) => ResourceScope[] | undefined): EntryReader {
  /** Runs a GET (read, vread, search, history) given as a relative URL: batch/transaction entries. */
  return async (ctx, url, client?: pg.PoolClient) => {
    const [path, query = ''] = url.split('?', 2);
    const parts = path.split('/').filter(Boolean);
    if (parts.length === 2) return { status: 200, body: JSON.parse((await fhir.read(ctx, parts[0], parts[1], client)).json!) };
    if (parts.length === 4 && parts[2] === '_history')
      return { status: 200, body: JSON.parse((await fhir.vread(ctx, parts[0], parts[1], parts[3], client)).json!) };
    if (parts.length === 1) {
      checkType(parts[0]);
      return {
        status: 200,
        body: (await fhir.search.search(ctx, [parts[0]], new URLSearchParams(query), { client, path: parts[0], grants: grantsOf(ctx) })).bundle(),
      };
    }
    throw badRequest(`The entry URL "${url}" is not a read, vread or search.`);
  };
}
