/**
 * The FHIR core, built once per app: search parameter registry, validator, indexer and the
 * FHIR service on the database pool.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { createR4Registry, type SearchParamRegistry } from '../src/indexing/registry.ts';
import { extractIndexes } from '../src/indexing/extract.ts';
import { createValidator } from '../src/fhir/validation/index.ts';
import { FhirService } from '../src/fhir/service.ts';
import type { SearchParamInfo, SearchParamLookup } from '../src/fhir/ports.ts';
import { badRequest } from '../src/fhir/errors.ts';
import type { SearchParameter } from '@medplum/fhirtypes';
import { readConformanceResources } from '../src/fhir/conformance-files.ts';

declare module 'fastify' {
  interface FastifyInstance {
    searchParams: SearchParamRegistry;
  }
}

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
  // SearchParameters stored through the API stay searchable across restarts.
  const { rows } = await pool.query<{ json: string }>(`SELECT v.res_text_vc AS json FROM hfj_resource r
    JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver
    WHERE r.res_type = 'SearchParameter' AND r.res_deleted_at IS NULL AND r.partition_id = 0 AND r.owner_id IS NULL ORDER BY r.res_id`);
  for (const { json } of rows) {
    const sp = JSON.parse(json) as SearchParameter;
    if (sp.status === 'retired') continue;
    try {
      addSearchParameter(sp);
    } catch (err) {
      warn('a stored SearchParameter cannot be used for search', { code: sp.code, err: String(err) });
    }
  }
  return { registry, addSearchParameter };
}

export default fp(
  async function core(app: FastifyInstance) {
    const { registry, addSearchParameter } = await loadSearchRegistry(app.pg, app.config.profilesDir, (msg, detail) => app.log.warn(detail, msg));
    const validator = await createValidator({ profilesDir: app.config.profilesDir });
    const service = new FhirService({
      onSearchParameter: addSearchParameter,
      pool: app.pg,
      searchPool: app.pgSearch,
      validator,
      indexer: { extract: (resource, partitionId) => extractIndexes(resource, registry, { partitionId }) },
      params: paramLookup(registry),
    });
    app.decorate('searchParams', registry);
    app.decorate('fhir', service);
  },
  { name: 'core', dependencies: ['db'] },
);
