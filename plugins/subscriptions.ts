/**
 * FHIR Subscriptions (src/subscriptions): the registry of active subscriptions and the write hook
 * that matches every write against it (in every process: an API-only process writes too), the
 * dispatcher that sends the notifications (where the workers run, SYNC_WORKERS), and the
 * backport's `Subscription/$status`, `Subscription/[id]/$status` and `$events` under both FHIR bases, with the FHIR API's
 * own credentials check (src/fhir/access.ts).
 */
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { need, requestAccess, unauthenticated } from '../src/fhir/access.ts';
import type { Scope } from '../src/fhir/ports.ts';
import { startDispatcher } from '../src/subscriptions/dispatcher.ts';
import { subscriptionHook } from '../src/subscriptions/hook.ts';
import { subscriptionEvents, subscriptionStatuses, subscriptionStatusOf } from '../src/subscriptions/operations.ts';
import { SubscriptionRegistry } from '../src/subscriptions/registry.ts';
import { checkAcceptable, sendJson } from './fhir-http.ts';

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
      subscriptionHook({ registry, params: app.fhir.params, indexer: app.fhir.indexer, allowHttp: app.config.webhookAllowHttp, baseUrls: bases }),
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

    for (const prefix of BASES) {
      await app.register(
        async (api) => {
          const scopes = new WeakMap<FastifyRequest, Scope>();
          // The FHIR API's credentials check (plugins/fhir.ts), for these routes outside its scope.
          api.addHook('onRequest', async (req, reply) => {
            checkAcceptable(req);
            const access = requestAccess(await app.credentials.fhirAccess(req), {
              hosted: (appId) => app.hostedSystems.has(appId),
              authOff: app.config.fhirAuth === 'off',
            });
            if ('refused' in access) {
              const error = access.refused === 'invalid' ? ', error="invalid_token"' : '';
              reply.header('WWW-Authenticate', `Bearer realm="${app.config.baseUrl}${prefix}"${error}`);
              throw unauthenticated(access.refused);
            }
            // The operations read the Subscription: its scope is needed, as for a read.
            need(access.grants, 'r', 'Subscription');
            scopes.set(req, access.scope);
          });
          const base = `${app.config.baseUrl}${prefix}`;
          const deps = { pool: app.pg, repo: app.fhir.repo };
          api.get('/Subscription/$status', async (req, reply) =>
            sendJson(req, reply, 200, await subscriptionStatuses(deps, scopes.get(req)!, base, new URLSearchParams(req.url.split('?')[1] ?? ''))),
          );
          api.get('/Subscription/:id/$status', async (req, reply) =>
            sendJson(req, reply, 200, await subscriptionStatusOf(deps, scopes.get(req)!, base, (req.params as { id: string }).id)),
          );
          api.get('/Subscription/:id/$events', async (req, reply) =>
            sendJson(
              req,
              reply,
              200,
              await subscriptionEvents(
                deps,
                scopes.get(req)!,
                base,
                (req.params as { id: string }).id,
                new URLSearchParams(req.url.split('?')[1] ?? ''),
              ),
            ),
          );
        },
        { prefix },
      );
    }
  },
  { name: 'subscriptions', dependencies: ['db', 'core', 'auth', 'outbound'] },
);
