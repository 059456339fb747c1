/**
 * De-duplication's links under a FHIR base, as `Linkage` resources (src/dedup/linkage.ts): a user's
 * token sees that person's links, the app's credentials every user's. `$confirm` keeps a link
 * whatever the rules say later; `$reject` unmerges the pair for good (the rules never link it
 * again). Linkage is not written otherwise here: the links are what de-duplication found.
 * Registered by the FHIR plugin in its own scope, so that its credentials check covers them.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Bundle } from '@medplum/fhirtypes';
import type { ResourceScope } from '../src/auth/scopes.ts';
import { need } from '../src/fhir/access.ts';
import { badRequest, notFound, outcome } from '../src/fhir/errors.ts';
import type { RequestContext } from '../src/fhir/ports.ts';
import { linkageId, parseLinkageId, toLinkage } from '../src/dedup/linkage.ts';
import { decide, linkRows, type LinkRow } from '../src/dedup/sql.ts';
import { sendJson, sendOutcome } from './fhir-http.ts';

export interface DedupRouteContext {
  ctxOf: (req: FastifyRequest) => RequestContext;
  grantsOf: (req: FastifyRequest) => ResourceScope[] | undefined;
}

const MAX_LINKS = 1000;

export function dedupRoutes(app: FastifyInstance, r: DedupRouteContext): void {
  const pairOf = (req: FastifyRequest): [string, string] => {
    const id = (req.params as { id: string }).id;
    const pair = parseLinkageId(id);
    if (!pair) throw notFound(`Linkage/${id.slice(0, 64)} is not known: GET Linkage lists the links.`);
    return pair;
  };
  const one = async (ctx: RequestContext, pair: [string, string]): Promise<LinkRow> => {
    const { rows } = await app.pg.query<LinkRow>(linkRows(ctx.partitionId, ctx.ownerId, 1, pair));
    if (!rows.length) throw notFound(`Linkage/${pair.join('-')} is not known: GET Linkage lists the links.`);
    return rows[0];
  };

  app.get('/Linkage', async (req, reply) => {
    need(r.grantsOf(req), 's', 'Linkage');
    const ctx = r.ctxOf(req);
    const query = new URLSearchParams(req.url.split('?')[1] ?? '');
    for (const k of query.keys())
      if (!['_count', '_format', '_pretty'].includes(k)) throw badRequest(`Linkage is searched whole here: "${k.slice(0, 50)}" is not taken.`);
    const count = Math.min(MAX_LINKS, Math.max(1, Number(query.get('_count') ?? MAX_LINKS) || MAX_LINKS));
    const { rows } = await app.pg.query<LinkRow>(linkRows(ctx.partitionId, ctx.ownerId, count));
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'searchset',
      total: rows.length,
      link: [{ relation: 'self', url: `${ctx.baseUrl}/Linkage` }],
      entry: rows.map((row) => ({ fullUrl: `${ctx.baseUrl}/Linkage/${linkageId(row)}`, resource: toLinkage(row), search: { mode: 'match' } })),
    };
    return sendJson(req, reply, 200, bundle);
  });
  app.get('/Linkage/:id', async (req, reply) => {
    need(r.grantsOf(req), 'r', 'Linkage');
    return sendJson(req, reply, 200, toLinkage(await one(r.ctxOf(req), pairOf(req))));
  });
  const decision = (status: 'confirmed' | 'rejected') => async (req: FastifyRequest, reply: FastifyReply) => {
    need(r.grantsOf(req), 'u', 'Linkage');
    const ctx = r.ctxOf(req);
    const pair = pairOf(req);
    await one(ctx, pair);
    await app.pg.query(decide(ctx.partitionId, ctx.ownerId, pair[0], pair[1], status));
    return sendJson(req, reply, 200, toLinkage(await one(ctx, pair)));
  };
  app.post('/Linkage/:id/$confirm', decision('confirmed'));
  app.post('/Linkage/:id/$reject', decision('rejected'));
  const readOnly = async (req: FastifyRequest, reply: FastifyReply) =>
    sendOutcome(
      req,
      reply,
      405,
      outcome('error', 'not-supported', 'Linkage here is what de-duplication found: POST Linkage/[id]/$confirm or $reject to decide on a link.'),
    );
  app.post('/Linkage', readOnly);
  app.put('/Linkage/:id', readOnly);
  app.patch('/Linkage/:id', readOnly);
  app.delete('/Linkage/:id', readOnly);
}
