/**
 * The FHIR core, built once per app: search parameter registry, validator, indexer and the
 * FHIR service on the database pool.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { createR4Registry, type SearchParamRegistry } from '../src/indexing/registry.ts';
import { extractIndexes } from '../src/indexing/extract.ts';
import { createValidator } from '../src/fhir/validation/index.ts';
import { FhirService } from '../src/fhir/service.ts';
import type { SearchParamInfo, SearchParamLookup } from '../src/fhir/ports.ts';

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

export default fp(
  async function core(app: FastifyInstance) {
    const registry = createR4Registry();
    const validator = await createValidator({ profilesDir: app.config.profilesDir });
    const service = new FhirService({
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
