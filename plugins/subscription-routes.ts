/**
 * The Subscriptions backport's operations under a FHIR base (src/subscriptions/operations.ts
 * decides): `Subscription/$status`, `Subscription/[id]/$status`, `Subscription/[id]/$events`.
 * Registered by the FHIR plugin in its own scope, so that its credentials check covers them.
 * See: https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/operations.html
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ResourceScope } from '../src/auth/scopes.ts';
import { need } from '../src/fhir/access.ts';
import type { RequestContext } from '../src/fhir/ports.ts';
import { subscriptionEvents, subscriptionStatuses, subscriptionStatusOf } from '../src/subscriptions/operations.ts';
import { sendJson } from './fhir-http.ts';

export interface SubscriptionRouteContext {
  ctxOf: (req: FastifyRequest) => RequestContext;
  grantsOf: (req: FastifyRequest) => ResourceScope[] | undefined;
}

export function subscriptionRoutes(app: FastifyInstance, r: SubscriptionRouteContext): void {
  const deps = () => ({ pool: app.pg, repo: app.fhir.repo });
  /** The request's scope, once its token may read Subscriptions (the operations read them). */
  const scopeOf = (req: FastifyRequest): RequestContext => {
    need(r.grantsOf(req), 'r', 'Subscription');
    return r.ctxOf(req);
  };
  const query = (req: FastifyRequest) => new URLSearchParams(req.url.split('?')[1] ?? '');
  const id = (req: FastifyRequest) => (req.params as { id: string }).id;
  app.get('/Subscription/$status', async (req, reply) => {
    const ctx = scopeOf(req);
    return sendJson(req, reply, 200, await subscriptionStatuses(deps(), ctx, ctx.baseUrl, query(req)));
  });
  app.get('/Subscription/:id/$status', async (req, reply) => {
    const ctx = scopeOf(req);
    return sendJson(req, reply, 200, await subscriptionStatusOf(deps(), ctx, ctx.baseUrl, id(req)));
  });
  app.get('/Subscription/:id/$events', async (req, reply) => {
    const ctx = scopeOf(req);
    return sendJson(req, reply, 200, await subscriptionEvents(deps(), ctx, ctx.baseUrl, id(req), query(req)));
  });
}
