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
import { SEARCH_PARAMETERS_CHANNEL, notifySearchParameters } from '../src/fhir/sql.ts';
import { keepListening } from '../src/db/listen.ts';

export { loadSearchRegistry, paramLookup };

declare module 'fastify' {
  interface FastifyInstance {
    searchParams: SearchParamRegistry;
  }
}

export default fp(
  async function core(app: FastifyInstance) {
    const { registry, addSearchParameter, refreshStored } = await loadSearchRegistry(app.pg, app.config.profilesDir, (msg, detail) =>
      app.log.warn(detail, msg),
    );
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

    // A SearchParameter made searchable in one process is in every process: its write's statement
    // NOTIFYs (delivered as it commits), and each process, listening on a connection of its own,
    // adds what was stored since it last looked. A lost connection is made again (and what was
    // missed read).
    service.repo.writeHooks.push((scope, written) =>
      scope.partitionId === 0 && scope.ownerId === null && written.some((w) => w.item.type === 'SearchParameter' && w.item.resource)
        ? [notifySearchParameters()]
        : [],
    );
    const refresh = () =>
      refreshStored().then(
        (added) => added && app.log.info({ added }, 'search parameters stored by another process are searchable here'),
        (err) => app.log.warn({ err: String(err) }, 'the stored search parameters could not be read again'),
      );
    let listening: { stop(): Promise<void> } | undefined;
    app.addHook('onReady', async () => {
      listening = await keepListening({
        pool: app.pg,
        channels: [SEARCH_PARAMETERS_CHANNEL],
        onNotify: () => void refresh(),
        onListening: () => void refresh(),
        onFail: (err) => app.log.warn({ err: String(err) }, 'not listening for search parameters stored by other processes; trying again'),
        retryMs: 5_000,
      });
    });
    app.addHook('onClose', async () => {
      await listening?.stop();
    });
  },
  { name: 'core', dependencies: ['db'] },
);
