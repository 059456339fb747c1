/**
 * A simulated vendor's sandbox system (a SandboxDefinition naming a `vendor`; plugins/sandbox.ts
 * makes its app, patients and records as for the others). Its HTTP face:
 * - its ordinary FHIR routes (plugins/fhir.ts, this system's tokens only) at an internal prefix,
 *   `/sandbox/{name}/internal/fhir/r4`, that answers only the facade: a request without this
 *   process's random facade header gets 404, as any unknown path;
 * - its public base (`basePath`, e.g. `/sandbox/epic/api/FHIR/R4`): the vendor's facade
 *   (src/sandbox/vendors/), which reads from the internal routes in-process with the caller's
 *   Authorization and answers as the vendor does; its `.well-known/smart-configuration` names
 *   the vendor's token endpoint;
 * - its token endpoint, `/sandbox/{name}/oauth2/token`, which the facade may count (eCW's limit)
 *   and which forwards in-process to this server's /oauth2/token (plugins/users.ts takes a client
 *   assertion whose `aud` is this URL).
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { SandboxDefinition } from '../src/sandbox/systems.ts';
import { toPublic, type FacadeAnswer, type InternalFhir, type VendorFacade } from '../src/sandbox/vendors/facade.ts';
import { internalPrefix, publicBasePath, vendorTokenPath } from '../src/sandbox/paths.ts';
import fhirRoutes from './fhir.ts';
import { smartConfiguration } from './smart.ts';

/** The header the facade's in-process requests carry, with a value no one outside this process knows. */
const FACADE_HEADER = 'x-tributary-facade';
const FACADE_SECRET = randomBytes(24).toString('hex');

export { internalPrefix, publicBasePath, vendorScopes, vendorTokenPath } from '../src/sandbox/paths.ts';

/** The system's ordinary FHIR routes at its internal prefix, and how the facade reads them with a caller's headers. */
export async function registerInternalRoutes(
  app: FastifyInstance,
  def: SandboxDefinition,
  appId: number,
): Promise<(authorization: string | undefined) => InternalFhir> {
  const prefix = internalPrefix(def);
  await app.register(async (internal) => {
    internal.addHook('onRequest', async (req, reply) => {
      if (req.headers[FACADE_HEADER] === FACADE_SECRET) return;
      return reply.code(404).send({ message: `Route GET:${req.url.split('?')[0].slice(0, 200)} not found`, error: 'Not Found', statusCode: 404 });
    });
    await internal.register(fhirRoutes, { prefix, onlyApp: appId, everything: def.everything });
  });
  const internalBase = `${app.config.baseUrl}${prefix}`;
  const tokenEndpoint = `${app.config.baseUrl}${vendorTokenPath(def)}`;
  return (authorization) => ({
    internalBase,
    tokenEndpoint,
    async get(relative) {
      const res = await app.inject({
        method: 'GET',
        url: `${prefix}/${relative}`,
        headers: { [FACADE_HEADER]: FACADE_SECRET, accept: 'application/fhir+json', ...(authorization ? { authorization } : {}) },
      });
      return { status: res.statusCode, contentType: String(res.headers['content-type'] ?? ''), body: res.body };
    },
  });
}

function send(reply: FastifyReply, a: FacadeAnswer): FastifyReply {
  reply.code(a.status);
  for (const [k, v] of Object.entries(a.headers)) reply.header(k, v);
  if (a.contentType) reply.header('Content-Type', a.contentType);
  if (a.bytes) return reply.send(a.bytes);
  return a.body === undefined ? reply.send() : reply.send(a.body);
}

/** The vendor's public base (in the context that plays the system's fault switches) and its SMART configuration. */
export function registerPublicRoutes(
  system: FastifyInstance,
  app: FastifyInstance,
  def: SandboxDefinition,
  facade: VendorFacade,
  internal: (authorization: string | undefined) => InternalFhir,
): void {
  const basePath = publicBasePath(def);
  const base = `${app.config.baseUrl}${basePath}`;
  system.get(`${basePath}/.well-known/smart-configuration`, async () => ({
    ...smartConfiguration(app.config.baseUrl, [def.auth]),
    token_endpoint: `${app.config.baseUrl}${vendorTokenPath(def)}`,
  }));
  const serve = async (req: FastifyRequest, reply: FastifyReply) => {
    const path = ((req.params as { '*'?: string })['*'] ?? '').replace(/\/+$/, '');
    const q = req.url.indexOf('?');
    const query = new URLSearchParams(q === -1 ? '' : req.url.slice(q + 1));
    const fhir = internal(req.headers.authorization);
    const answer = await facade.serve({ path, query, base, ...(req.headers.accept ? { accept: req.headers.accept } : {}) }, fhir);
    // The internal base never shows outside (a facade that left it in a link or a URL).
    if (typeof answer.body === 'string') answer.body = toPublic(answer.body, fhir.internalBase, base);
    return send(reply, answer);
  };
  system.get(`${basePath}/*`, serve);
}

/** The vendor's token endpoint: counted by the facade where it counts, then this server's /oauth2/token in-process. */
export async function registerTokenEndpoint(app: FastifyInstance, def: SandboxDefinition, facade: VendorFacade): Promise<void> {
  await app.register(async (tokens) => {
    tokens.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => done(null, body));
    tokens.post(vendorTokenPath(def), async (req, reply) => {
      const refused = facade.tokenCall?.();
      if (refused) return send(reply, refused);
      const res = await app.inject({
        method: 'POST',
        url: '/oauth2/token',
        headers: {
          'content-type': String(req.headers['content-type'] ?? 'application/x-www-form-urlencoded'),
          ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
        },
        payload: typeof req.body === 'string' ? req.body : '',
      });
      reply.code(res.statusCode);
      for (const h of ['content-type', 'cache-control', 'pragma', 'www-authenticate'])
        if (res.headers[h] !== undefined) reply.header(h, String(res.headers[h]));
      return reply.send(res.rawPayload);
    });
  });
}
