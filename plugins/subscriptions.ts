/**
 * FHIR Subscriptions (src/subscriptions): the registry of active subscriptions and the write hook
 * that matches every write against it (in every process: an API-only process writes too), the
 * dispatcher that sends the notifications (where the workers run, SYNC_WORKERS). The backport's
 * operations are served by the FHIR routes (plugins/subscription-routes.ts).
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { startDispatcher } from '../src/subscriptions/dispatcher.ts';
import { subscriptionHook } from '../src/subscriptions/hook.ts';
import { SubscriptionRegistry } from '../src/subscriptions/registry.ts';

declare module 'fastify' {
  interface FastifyInstance {
    subscriptions: { registry: SubscriptionRegistry; wake(): void };
  }
}

const BASES = ['/fhir/r4', '/r4'];

export default fp(
  async function subscriptions(app: FastifyInstance) {
    const bases = BASES.map((b) => `${app.config.baseUrl}${b}`);
    const registry = new SubscriptionRegistry({ pool: app.pg, params: app.fhir.params, baseUrls: bases, log: app.log });
    await registry.start();
    app.fhir.repo.writeHooks.push(
      subscriptionHook({
        registry,
        params: app.fhir.params,
        indexer: app.fhir.indexer,
        repo: app.fhir.repo,
        search: app.fhir.search,
        allowHttp: app.config.webhookAllowHttp,
        baseUrls: bases,
      }),
    );
    let wake = () => {};
    app.decorate('subscriptions', { registry, wake: () => wake() });
    app.addHook('onClose', () => registry.stop());

    if (app.config.syncWorkers) {
      const dispatcher = startDispatcher({
        pool: app.pg,
        repo: app.fhir.repo,
        indexer: app.fhir.indexer,
        search: app.fhir.search,
        vault: app.vault,
        fetch: app.outbound.fetch,
        registry,
        log: app.log,
        base: bases[0],
        retry: app.config.subscriptionRetry,
        timeoutMs: app.config.subscriptionTimeoutMs,
        leaseSeconds: 60,
        concurrency: app.config.webhookConcurrency,
      });
      wake = dispatcher.wake;
      app.addHook('onClose', () => dispatcher.stop());
    }
  },
  { name: 'subscriptions', dependencies: ['db', 'core', 'auth', 'outbound'] },
);
