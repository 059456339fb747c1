/**
 * The FHIR R4 REST API on HTTP: it translates requests to the FHIR service and results back to
 * HTTP (status, ETag, Location, Last-Modified, Prefer), and decides nothing itself.
 * See: https://hl7.org/fhir/R4/http.html
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { fhirError, informational, outcome } from '../src/fhir/errors.ts';
import type { RequestContext, Scope } from '../src/fhir/ports.ts';
import type { ResourceScope } from '../src/auth/scopes.ts';
import { checkId, checkType, etag, type FhirService, type WriteOutcome } from '../src/fhir/service.ts';
import type { StoredVersion } from '../src/storage/repository.ts';
import { processBundle } from '../src/fhir/bundle.ts';
import { serverCapabilityStatement } from '../src/fhir/server-capabilities.ts';
import { applySummary, parseElements, parseSummary } from '../src/fhir/summary.ts';
import { checkAcceptable, headerOnce, parseJsonBody, sendJson, sendOutcome, single } from './fhir-http.ts';
import { parseTypes } from '../src/search/engine.ts';
import { checkRouteScopes, NO_ACCESS, requestAccess, unauthenticated } from '../src/fhir/access.ts';
import { history } from '../src/fhir/history.ts';
import { patientEverything } from '../src/fhir/everything.ts';
import { reindexStatus, startReindex } from '../src/fhir/reindex-operation.ts';
import { entryReader } from '../src/fhir/entry-reader.ts';
import { exportRoutes } from './export-routes.ts';
import { subscriptionRoutes } from './subscription-routes.ts';
import { dedupRoutes } from './dedup-routes.ts';

declare module 'fastify' {
  interface FastifyInstance {
    fhir: FhirService;
  }
}

type Q = Record<string, string | string[] | undefined>;

/** Answered without credentials (paths under the FHIR base). */
const OPEN_PATHS = new Set(['/metadata', '/.well-known/smart-configuration']);

function lastModified(d: Date): string {
  return d.toUTCString();
}

/** Reads the request's Prefer: return=... (minimal, representation, OperationOutcome). */
function preferReturn(req: FastifyRequest): string {
  const prefer = req.headers.prefer;
  if (typeof prefer !== 'string') return 'representation';
  const m = /return=(minimal|representation|OperationOutcome)/i.exec(prefer);
  return m ? m[1] : 'representation';
}

export interface FhirRoutesOptions {
  prefix?: string;
  softwareVersion?: string;
  /**
   * Serve one app's data only: tokens and credentials of other apps are refused, and FHIR_AUTH=off
   * does not open it (a sandbox health system's FHIR base).
   */
  onlyApp?: number;
  /** Serve `Patient/[id]/$everything` (default true; a sandbox can play a system without it). */
  everything?: boolean;
}

export default async function fhirRoutes(app: FastifyInstance, opts: FhirRoutesOptions) {
  const base = opts.prefix ?? '/fhir/r4';
  // Whose data each request reaches, and what its token's scopes allow (absent: everything), set
  // by the onRequest hook below. Searches take the scopes along: the engine applies them to the
  // matches, to what they include and to the targets of chains (v2 filters too).
  const scopes = new WeakMap<FastifyRequest, Scope>();
  const grants = new WeakMap<FastifyRequest, ResourceScope[]>();
  // A Bundle's GET entries are searched with the scopes of the request that sent it.
  const entryGrants = new WeakMap<RequestContext, ResourceScope[]>();
  const ctxOf = (req: FastifyRequest): RequestContext => ({
    ...(scopes.get(req) ?? NO_ACCESS),
    baseUrl: `${app.config.baseUrl}${base}`,
    requestId: req.id,
  });

  function sendStored(req: FastifyRequest, reply: FastifyReply, status: number, v: StoredVersion): FastifyReply {
    reply.header('ETag', etag(v.version)).header('Last-Modified', lastModified(v.lastUpdated));
    const q = req.query as Q;
    const summary = parseSummary(single(q._summary, '_summary'));
    const elements = parseElements(single(q._elements, '_elements'));
    if (summary || elements) return sendJson(req, reply, status, applySummary(JSON.parse(v.json!), summary, elements));
    return sendJson(req, reply, status, v.json!);
  }

  function sendWrite(req: FastifyRequest, reply: FastifyReply, w: WriteOutcome): FastifyReply {
    const v = w.stored;
    reply
      .header('ETag', etag(v.version))
      .header('Last-Modified', lastModified(v.lastUpdated))
      .header('Location', `${ctxOf(req).baseUrl}/${v.type}/${v.id}/_history/${v.version}`);
    const mode = preferReturn(req);
    if (mode === 'minimal') return reply.code(w.status).send();
    if (mode === 'OperationOutcome') return sendOutcome(req, reply, w.status, informational(`${v.type}/${v.id} version ${v.version} stored.`));
    return sendJson(req, reply, w.status, v.json!);
  }

  /** The history Bundle of a resource, a type or (neither given) the whole scope. */
  const sendHistory = async (req: FastifyRequest, reply: FastifyReply, type?: string, id?: string) => {
    const search = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
    return sendJson(req, reply, 200, await history(app.fhir, ctxOf(req), { type, id, query: req.query as Q, search, grants: grants.get(req) }));
  };

  const readEntry = entryReader(app.fhir, (ctx) => entryGrants.get(ctx));

  app.addContentTypeParser(
    ['application/json', 'application/fhir+json', 'application/json-patch+json'],
    { parseAs: 'buffer' },
    (_req, body, done) => {
      try {
        done(null, parseJsonBody(body as Buffer));
      } catch (err) {
        done(err as Error, undefined);
      }
    },
  );
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, new URLSearchParams(body as string));
  });
  // Fastify parses text/plain by default; a FHIR body in any format but JSON is a 415 like the rest.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (req, _body, done) => {
    done(fhirError(415, 'not-supported', `Content-Type "${req.headers['content-type']}" is not supported; send application/fhir+json.`), undefined);
  });

  app.addHook('onRequest', async (req, reply) => {
    checkAcceptable(req);
    const path = req.url.slice(base.length).split('?')[0];
    if (OPEN_PATHS.has(path)) return;
    const access = requestAccess(await app.credentials.fhirAccess(req), {
      onlyApp: opts.onlyApp,
      hosted: (appId) => app.hostedSystems.has(appId),
      authOff: app.config.fhirAuth === 'off',
    });
    if ('refused' in access) {
      const error = access.refused === 'invalid' ? ', error="invalid_token"' : '';
      reply.header('WWW-Authenticate', `Bearer realm="${app.config.baseUrl}${base}"${error}`);
      throw unauthenticated(access.refused);
    }
    scopes.set(req, access.scope);
    if (access.grants) grants.set(req, access.grants);
  });

  // Every route's interactions, checked once the body is parsed (a Bundle's entries each count).
  app.addHook('preHandler', async (req) => {
    const granted = grants.get(req);
    if (!granted) return;
    checkRouteScopes(granted, {
      route: (req.routeOptions.url ?? '').slice(base.length) || '/',
      method: req.method,
      type: (req.params as { type?: string } | undefined)?.type,
      body: req.body,
      searchQuery: () => searchQuery(req),
    });
  });

  app.get('/metadata', async (req, reply) =>
    sendJson(
      req,
      reply,
      200,
      serverCapabilityStatement({
        baseUrl: ctxOf(req).baseUrl,
        serverUrl: app.config.baseUrl,
        softwareVersion: opts.softwareVersion,
        params: app.fhir.params,
        everything: opts.everything,
      }),
    ),
  );

  app.post('/', async (req, reply) => {
    const ctx = ctxOf(req);
    const granted = grants.get(req);
    if (granted) entryGrants.set(ctx, granted);
    return sendJson(req, reply, 200, await processBundle(app.fhir, ctx, req.body, readEntry));
  });

  app.get('/_history', async (req, reply) => sendHistory(req, reply));
  app.get('/:type/_history', async (req, reply) => sendHistory(req, reply, (req.params as { type: string }).type));
  app.get('/:type/:id/_history', async (req, reply) => {
    const p = req.params as { type: string; id: string };
    return sendHistory(req, reply, p.type, p.id);
  });

  /** The query string of a request, plus the form body of a POST _search (repeated keys kept). */
  const searchQuery = (req: FastifyRequest): URLSearchParams => {
    const query = new URLSearchParams(req.url.split('?')[1] ?? '');
    if (req.body instanceof URLSearchParams) for (const [k, v] of req.body) query.append(k, v);
    else if (req.method === 'POST' && req.body !== undefined && req.body !== null) {
      throw fhirError(415, 'not-supported', 'POST _search takes its parameters as application/x-www-form-urlencoded.');
    }
    return query;
  };
  const strict = (req: FastifyRequest) => /handling\s*=\s*strict/i.test(String(req.headers.prefer ?? ''));
  const typeSearch = async (req: FastifyRequest, reply: FastifyReply, type: string, compartment?: { type: string; id: string }) => {
    checkType(type);
    const path = compartment ? `${compartment.type}/${compartment.id}/${type}` : type;
    const result = await app.fhir.search.search(ctxOf(req), [type], searchQuery(req), {
      strict: strict(req),
      compartment,
      path,
      grants: grants.get(req),
    });
    return sendJson(req, reply, 200, result.json());
  };
  const systemSearch = async (req: FastifyRequest, reply: FastifyReply) => {
    const query = searchQuery(req);
    const types = query.has('_type') ? parseTypes(query.getAll('_type').join(',')) : null;
    return sendJson(
      req,
      reply,
      200,
      (await app.fhir.search.search(ctxOf(req), types, query, { strict: strict(req), path: '', grants: grants.get(req) })).json(),
    );
  };
  // $reindex: a background job that recomputes the index rows of what is stored (after a
  // SearchParameter was added); 202 with a Content-Location to poll for its state.
  const reindex = async (req: FastifyRequest, reply: FastifyReply, type?: string) => {
    const started = await startReindex(app.jobs, ctxOf(req), type);
    reply.header('Content-Location', started.location);
    return sendOutcome(req, reply, 202, started.outcome);
  };
  app.post('/$reindex', async (req, reply) => reindex(req, reply));
  app.post('/:type/$reindex', async (req, reply) => reindex(req, reply, (req.params as { type: string }).type));
  app.get('/$reindex/:job', async (req, reply) =>
    sendJson(req, reply, 200, await reindexStatus(app.jobs, ctxOf(req), (req.params as { job: string }).job)),
  );
  // Bulk Data export (plugins/export-routes.ts), under this plugin's credentials check.
  exportRoutes(app, { ctxOf, grantsOf: (req) => grants.get(req) });
  // The Subscriptions backport's $status and $events (plugins/subscription-routes.ts).
  subscriptionRoutes(app, { ctxOf, grantsOf: (req) => grants.get(req) });
  // De-duplication's links as Linkage (plugins/dedup-routes.ts).
  dedupRoutes(app, { ctxOf, grantsOf: (req) => grants.get(req) });
  app.get('/', systemSearch);
  app.post('/_search', systemSearch);
  app.get('/:type', async (req, reply) => typeSearch(req, reply, (req.params as { type: string }).type));
  app.post('/:type/_search', async (req, reply) => typeSearch(req, reply, (req.params as { type: string }).type));
  app.get('/:type/_search', async (req, reply) => typeSearch(req, reply, (req.params as { type: string }).type));
  app.get('/:ctype/:cid/:type', async (req, reply) => {
    const p = req.params as { ctype: string; cid: string; type: string };
    checkType(p.ctype);
    checkId(p.cid);
    return typeSearch(req, reply, p.type, { type: p.ctype, id: p.cid });
  });

  // Patient/[id]/$everything (src/fhir/everything.ts).
  if (opts.everything !== false) {
    app.get('/Patient/:id/$everything', async (req, reply) => {
      const { id } = req.params as { id: string };
      const query = new URLSearchParams(req.url.split('?')[1] ?? '');
      return sendJson(req, reply, 200, (await patientEverything(app.fhir, ctxOf(req), id, query, grants.get(req))).json());
    });
  }

  app.get('/:type/:id', async (req, reply) => {
    const { type, id } = req.params as { type: string; id: string };
    const v = await app.fhir.read(ctxOf(req), type, id);
    const inm = single(req.headers['if-none-match'], 'If-None-Match');
    // A list of ETags (RFC 9110 section 13.1.2), compared weakly; Node joins repeated headers into one list.
    const tags = inm?.split(',').map((tag) => tag.trim().replace(/^W\//, '')) ?? [];
    if (tags.includes('*') || tags.includes(`"${v.version}"`)) return reply.code(304).header('ETag', etag(v.version)).send();
    const ims = single(req.headers['if-modified-since'], 'If-Modified-Since');
    if (ims && !inm) {
      const since = Date.parse(ims);
      if (!Number.isNaN(since) && Math.floor(v.lastUpdated.getTime() / 1000) <= Math.floor(since / 1000)) {
        return reply.code(304).header('ETag', etag(v.version)).header('Last-Modified', lastModified(v.lastUpdated)).send();
      }
    }
    return sendStored(req, reply, 200, v);
  });
  app.get('/:type/:id/_history/:vid', async (req, reply) => {
    const { type, id, vid } = req.params as { type: string; id: string; vid: string };
    return sendStored(req, reply, 200, await app.fhir.vread(ctxOf(req), type, id, vid));
  });

  app.post('/:type', async (req, reply) => {
    const { type } = req.params as { type: string };
    const ifNoneExist = headerOnce(req, 'If-None-Exist');
    return sendWrite(req, reply, await app.fhir.create(ctxOf(req), type, req.body, { ifNoneExist }));
  });
  app.put('/:type/:id', async (req, reply) => {
    const { type, id } = req.params as { type: string; id: string };
    const ifMatch = single(req.headers['if-match'], 'If-Match');
    return sendWrite(req, reply, await app.fhir.update(ctxOf(req), type, id, req.body, { ifMatch }));
  });
  app.put('/:type', async (req, reply) => {
    const { type } = req.params as { type: string };
    const query = req.url.split('?')[1];
    if (!query) throw fhirError(405, 'not-supported', `PUT ${type} needs an id ([type]/[id]) or a search condition (conditional update).`);
    return sendWrite(req, reply, await app.fhir.conditionalUpdate(ctxOf(req), type, query, req.body));
  });
  app.patch('/:type/:id', async (req, reply) => {
    const { type, id } = req.params as { type: string; id: string };
    const ct = String(req.headers['content-type'] ?? '');
    if (!ct.startsWith('application/json-patch+json'))
      throw fhirError(415, 'not-supported', 'PATCH takes a JSON Patch (Content-Type: application/json-patch+json).');
    const ifMatch = single(req.headers['if-match'], 'If-Match');
    return sendWrite(req, reply, await app.fhir.patch(ctxOf(req), type, id, req.body, { ifMatch }));
  });
  app.delete('/:type/:id', async (req, reply) => {
    const { type, id } = req.params as { type: string; id: string };
    const version = await app.fhir.delete(ctxOf(req), type, id);
    if (version !== undefined) reply.header('ETag', etag(version));
    return sendOutcome(
      req,
      reply,
      200,
      informational(version === undefined ? `${type}/${id} did not exist or was already deleted.` : `${type}/${id} deleted.`),
    );
  });
  app.delete('/:type', async (req, reply) => {
    const { type } = req.params as { type: string };
    const query = req.url.split('?')[1];
    if (!query) throw fhirError(405, 'not-supported', `DELETE ${type} needs an id or a search condition.`);
    const n = await app.fhir.conditionalDelete(ctxOf(req), type, query);
    return sendOutcome(req, reply, 200, informational(n ? `Deleted the ${type} that matched.` : `No ${type} matched; nothing deleted.`));
  });

  app.setNotFoundHandler((req, reply) =>
    sendOutcome(req, reply, 404, outcome('error', 'not-found', `No FHIR interaction at ${req.method} ${req.url.split('?')[0]}.`)),
  );
}
