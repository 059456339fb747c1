/**
 * The search parameter registry the FHIR core is built on: R4's parameters, the profiles folder's
 * and those stored through the API, and the lookup the FHIR service and search engine read it by.
 */
import type pg from 'pg';
import type { SearchParameter } from '@medplum/fhirtypes';
import { createR4Registry, type SearchParamRegistry } from '../indexing/registry.ts';
import type { SearchParamInfo, SearchParamLookup } from './ports.ts';
import { badRequest } from './errors.ts';
import { readConformanceResources } from './conformance-files.ts';
import { storedSearchParameters } from './sql.ts';

export function paramLookup(registry: SearchParamRegistry): SearchParamLookup {
  const info = (p: ReturnType<SearchParamRegistry['get']> & object): SearchParamInfo => ({
    code: p.code,
    type: p.type,
    paths: p.parts.map((x) => x.path),
    targets: [...p.target],
    url: p.definition.url,
    components: p.type === 'composite' ? (p.definition.component ?? []).map((x) => registry.byUrl(x.definition ?? '')?.code ?? '?') : undefined,
  });
  return {
    get: (type, code) => {
      const p = registry.get(type, code);
      return p && info(p);
    },
    list: (type) => registry.forType(type).map(info),
  };
}

/**
 * R4's search parameters, the profiles folder's, and those stored through the API (partition 0):
 * the registry every index row and search is made with. `addSearchParameter` makes one more
 * searchable, or says in a 400 why it cannot be.
 */
export async function loadSearchRegistry(pool: pg.Pool, profilesDir: string, warn: (msg: string, detail: object) => void) {
  const registry = createR4Registry();
  const addSearchParameter = (sp: SearchParameter): void => {
    try {
      registry.addChecked(sp);
    } catch (err) {
      throw badRequest(`SearchParameter ${sp.code} cannot be used for search: ${(err as Error).message}`, ['SearchParameter.expression']);
    }
  };
  for (const { resource } of await readConformanceResources<SearchParameter>(profilesDir, 'search-parameters', 'SearchParameter')) {
    addSearchParameter(resource);
  }
  // SearchParameters stored through the API stay searchable across restarts, and reach every
  // process: `refreshStored` adds those stored since (another process wrote them; see
  // plugins/core.ts, which runs it when one NOTIFYs trb_search_parameters).
  const seen = new Set<string>();
  const refreshStored = async (): Promise<number> => {
    const { rows } = await pool.query<{ json: string }>(storedSearchParameters());
    let added = 0;
    for (const { json } of rows) {
      if (seen.has(json)) continue;
      seen.add(json);
      const sp = JSON.parse(json) as SearchParameter;
      if (sp.status === 'retired') continue;
      try {
        addSearchParameter(sp);
        added++;
      } catch (err) {
        warn('a stored SearchParameter cannot be used for search', { code: sp.code, err: String(err) });
      }
    }
    return added;
  };
  await refreshStored();
  return { registry, addSearchParameter, refreshStored };
}
