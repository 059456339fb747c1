/**
 * The FHIR core, built once per app: search parameter registry, validator, indexer and the
 * FHIR service on the database pool.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { SearchParamRegistry } from '../src/indexing/registry.ts';
import { extractIndexes } from '../src/indexing/extract.ts';
import { createValidator } from '../src/fhir/validation/index.ts';
import { FhirService } from '../src/fhir/service.ts';
import { loadSearchRegistry, paramLookup } from '../src/fhir/search-registry.ts';

export { loadSearchRegistry, paramLookup };

declare module 'fastify' {
  interface FastifyInstance {
    searchParams: SearchParamRegistry;
  }
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
