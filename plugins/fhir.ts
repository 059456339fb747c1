/**
 * The FHIR R4 REST API on HTTP: it translates requests to the FHIR service and results back to
 * HTTP (status, ETag, Location, Last-Modified, Prefer), and decides nothing itself.
 * See: https://hl7.org/fhir/R4/http.html
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Bundle, BundleEntry, Resource } from '@medplum/fhirtypes';
import type pg from 'pg';
import { badRequest, fhirError, informational, notFound as notFoundError, outcome } from '../src/fhir/errors.ts';
import type { RequestContext, Scope } from '../src/fhir/ports.ts';
import { allowed, missingSearchScope, parseScopes, searchesAny, searchScopesOf, type Interaction, type ResourceScope } from '../src/auth/scopes.ts';
import { checkId, checkType, type FhirService, type WriteOutcome } from '../src/fhir/service.ts';
import type { StoredVersion } from '../src/storage/repository.ts';
import { checkBundle, processBatch, processTransaction, type EntryReader } from '../src/fhir/bundle.ts';
import { buildCapabilityStatement } from '../src/fhir/capability.ts';
import { applySummary, parseElements, parseSummary } from '../src/fhir/summary.ts';
import { checkAcceptable, headerOnce, parseJsonBody, sendJson, sendOutcome, single } from './fhir-http.ts';
import { parseTypes, patientCompartmentTypes } from '../src/search/engine.ts';
import { REINDEX_QUEUE, type ReindexJob } from '../src/search/reindex.ts';

declare module 'fastify' {
  interface FastifyInstance {
    fhir: FhirService;
  }
}

type Q = Record<string, string | string[] | undefined>;

/** Answered without credentials (paths under the FHIR base). */
const OPEN_PATHS = new Set(['/metadata', '/.well-known/smart-configuration']);
/** The scope of a request the hook did not pass: partition -1 holds nothing. */
const NO_ACCESS: Scope = { partitionId: -1, ownerId: null };

const INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type'];
const SYSTEM_INTERACTIONS = ['transaction', 'batch', 'history-system', 'search-system'];

function etag(v: number): string {
  return `W/"${v}"`;
}

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

/** What `Patient/[id]/$everything` takes: its own parameters, the paging links' and the formats'. */
const EVERYTHING_PARAMS = new Set(['_since', '_type', '_count', '_page', '_include', '_lastUpdated', '_total', '_summary', '_elements', '_format', '_pretty']);

export default async function fhirRoutes(app: FastifyInstance, opts: FhirRoutesOptions) {
    const base = opts.prefix ?? '/fhir/r4';
    // Whose data each request reaches, and what its token's scopes allow (absent: everything), set
    // by the onRequest hook below. Searches take the scopes along: the engine applies them to the
    // matches, to what they include and to the targets of chains (v2 filters too).
    const scopes = new WeakMap<FastifyRequest, Scope>();
    const grants = new WeakMap<FastifyRequest, ResourceScope[]>();
    // A Bundle's GET entries are searched with the scopes of the request that sent it.
    const entryGrants = new WeakMap<RequestContext, ResourceScope[]>();
    const ctxOf = (req: FastifyRequest): RequestContext => ({ ...(scopes.get(req) ?? NO_ACCESS), baseUrl: `${app.config.baseUrl}${base}`, requestId: req.id });

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

    function historyBundle(req: FastifyRequest, total: number, entries: StoredVersion[], self: string): Bundle {
      const ctx = ctxOf(req);
      return {
        resourceType: 'Bundle',
        type: 'history',
        total,
        link: [{ relation: 'self', url: self }],
        entry: entries.map((v) => {
          const fullUrl = `${ctx.baseUrl}/${v.type}/${v.id}`;
          if (v.deleted) {
            return { fullUrl, request: { method: 'DELETE', url: `${v.type}/${v.id}` }, response: { status: '410 Gone', lastModified: v.lastUpdated.toISOString() } };
          }
          return {
            fullUrl,
            resource: JSON.parse(v.json!) as Resource,
            request: { method: v.version === 1 ? 'POST' : 'PUT', url: v.version === 1 ? v.type : `${v.type}/${v.id}` },
            response: { status: v.version === 1 ? '201 Created' : '200 OK', etag: etag(v.version), lastModified: v.lastUpdated.toISOString() },
          } as BundleEntry;
        }),
      };
    }

    async function history(req: FastifyRequest, reply: FastifyReply, type?: string, id?: string) {
      const q = req.query as Q;
      const count = intParam(single(q._count, '_count'), 20, 1, 1000, '_count');
      const offset = intParam(single(q._offset, '_offset'), 0, 0, 1_000_000, '_offset');
      const since = dateParam(single(q._since, '_since'), '_since');
      const at = dateParam(single(q._at, '_at'), '_at');
      const { total, entries } = await app.fhir.history(ctxOf(req), { type, id, since, at, count, offset, types: type ? undefined : historyTypes(req) });
      const path = [type, id, '_history'].filter(Boolean).join('/');
      const self = `${ctxOf(req).baseUrl}/${path}${req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : ''}`;
      const bundle = historyBundle(req, total, entries, self);
      if (offset + count < total) {
        const next = new URLSearchParams(q as Record<string, string>);
        next.set('_offset', String(offset + count));
        next.set('_count', String(count));
        bundle.link!.push({ relation: 'next', url: `${ctxOf(req).baseUrl}/${path}?${next}` });
      }
      return sendJson(req, reply, 200, bundle);
    }

    /**
     * The types a system-level `_history` may return: those the scopes grant for search whole
     * (undefined: every type). Past versions are not indexed, so no v2 filter can be applied to
     * them: a token with one is refused rather than shown versions its filter would exclude.
     */
    function historyTypes(req: FastifyRequest): string[] | undefined {
      const granted = grants.get(req);
      if (!granted || allowed(granted, 's', '*') === 'all') return undefined;
      const searching = granted.filter((g) => g.interactions.has('s'));
      const filtered = searching.filter((g) => g.filter.length);
      if (filtered.length) {
        throw fhirError(403, 'forbidden', `The access token's scopes filter some types (${filtered.map((g) => g.text).join(', ')}); filters cannot be applied to past versions, so _history across types needs those types granted without a filter.`);
      }
      return [...new Set(searching.map((g) => g.type))];
    }

    /** Runs a GET (read, vread, search, history) given as a relative URL: batch/transaction entries. */
    const readEntry: EntryReader = async (ctx, url, client?: pg.PoolClient) => {
      const [path, query = ''] = url.split('?', 2);
      const parts = path.split('/').filter(Boolean);
      if (parts.length === 2) return { status: 200, body: JSON.parse((await app.fhir.read(ctx, parts[0], parts[1], client)).json!) };
      if (parts.length === 4 && parts[2] === '_history') return { status: 200, body: JSON.parse((await app.fhir.vread(ctx, parts[0], parts[1], parts[3], client)).json!) };
      if (parts.length === 1) {
        checkType(parts[0]);
        return { status: 200, body: (await app.fhir.search.search(ctx, [parts[0]], new URLSearchParams(query), { client, path: parts[0], grants: entryGrants.get(ctx) })).bundle() };
      }
      throw badRequest(`The entry URL "${url}" is not a read, vread or search.`);
    };

    app.addContentTypeParser(['application/json', 'application/fhir+json', 'application/json-patch+json'], { parseAs: 'buffer' }, (_req, body, done) => {
      try {
        done(null, parseJsonBody(body as Buffer));
      } catch (err) {
        done(err as Error, undefined);
      }
    });
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
      let access = await app.credentials.fhirAccess(req);
      // A hosted system's (a sandbox's) tokens are for its own base; its base takes no one else's.
      if (access && access !== 'invalid' && (opts.onlyApp === undefined ? app.hostedSystems.has(access.app.id) : access.app.id !== opts.onlyApp)) access = 'invalid';
      if (access === undefined && app.config.fhirAuth === 'off' && opts.onlyApp === undefined) {
        scopes.set(req, { partitionId: 0, ownerId: null });
        return;
      }
      if (access === undefined || access === 'invalid') {
        reply.header('WWW-Authenticate', `Bearer realm="${app.config.baseUrl}${base}"${access ? ', error="invalid_token"' : ''}`);
        throw fhirError(
          401,
          'login',
          access
            ? 'The access token or client credentials are unknown, expired or revoked, or x-oneup-user-id names no user of this app.'
            : 'Authentication is required: send Authorization: Bearer <access token>, or client_id, client_secret and x-oneup-user-id headers.',
        );
      }
      // A sandbox system's patient also reads what the system holds for all (its practitioners...).
      scopes.set(req, { partitionId: access.app.id, ownerId: access.userId, ...(opts.onlyApp !== undefined ? { withUnowned: true } : {}) });
      grants.set(req, parseScopes(access.scope));
    });

    /**
     * 403 unless the scopes allow the interaction on the type. A search allowed only through v2
     * filters passes: the search engine applies them. Reads, writes and history need the type whole.
     */
    const need = (req: FastifyRequest, interaction: Interaction, type: string): void => {
      const granted = grants.get(req);
      if (!granted) return;
      const verdict = allowed(granted, interaction, type);
      if (verdict === 'all') return;
      if (verdict !== 'denied' && interaction === 's') return;
      const what = { c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search' }[interaction];
      throw fhirError(
        403,
        'forbidden',
        verdict === 'denied'
          ? `The access token's scopes do not allow ${what} on ${type === '*' ? 'all types' : type}.`
          : `The access token's scopes allow ${what} on ${type} only through query filters (${searchScopesOf(granted, type).join(', ')}), which apply to a search of ${type}.`,
      );
    };
    /** 403 unless the scopes allow searching the type whole: what no filter can be applied to (history, whose past versions are not indexed). */
    const needWhole = (req: FastifyRequest, type: string, what: string): void => {
      const granted = grants.get(req);
      if (!granted) return;
      const verdict = allowed(granted, 's', type);
      if (verdict === 'all') return;
      if (verdict === 'denied') throw fhirError(403, 'forbidden', missingSearchScope(type, what));
      throw fhirError(403, 'forbidden', `The access token's scopes allow ${type} only through query filters (${searchScopesOf(granted, type).join(', ')}), which cannot be applied to ${what}: patient/${type}.rs without a filter is missing.`);
    };
    const ENTRY_INTERACTION: Record<string, Interaction> = { POST: 'c', PUT: 'u', PATCH: 'u', DELETE: 'd' };
    // Every route's interactions, checked once the body is parsed (a Bundle's entries each count).
    app.addHook('preHandler', async (req) => {
      if (!grants.has(req)) return;
      const route = (req.routeOptions.url ?? '').slice(base.length) || '/';
      const p = req.params as { type?: string; id?: string; ctype?: string };
      // $reindex checks its caller itself; $everything returns the types the scopes allow.
      if (route === '/metadata' || route.includes('$reindex') || route.endsWith('$everything')) return;
      if (route === '/' && req.method === 'POST') {
        for (const e of (req.body as Bundle | undefined)?.entry ?? []) {
          const method = e.request?.method ?? '';
          const [path] = (e.request?.url ?? '').split('?');
          const parts = path.split('/').filter(Boolean);
          const type = parts[0] ?? '*';
          // A GET entry is a read, vread or search (readEntry); its searches take the scopes along.
          if (method === 'GET') need(req, parts.length === 1 ? 's' : 'r', parts.length ? type : '*');
          else if (ENTRY_INTERACTION[method]) need(req, ENTRY_INTERACTION[method], type);
        }
        return;
      }
      if (route === '/' || route === '/_search' || route === '/_history') {
        // Across types: those the scopes allow (the engine and history keep to them).
        const types = route === '/_history' ? [] : searchQuery(req).getAll('_type').join(',').split(',').filter(Boolean);
        if (!types.length && !searchesAny(grants.get(req)!)) need(req, 's', '*');
        for (const t of types) need(req, 's', t);
        return;
      }
      const type = p.type!;
      if (req.method === 'GET' && (route === '/:type' || route === '/:type/_search' || route === '/:ctype/:cid/:type') || route === '/:type/_search') {
        need(req, 's', type);
      } else if (req.method === 'GET' && route === '/:type/_history') {
        needWhole(req, type, `${type}/_history`);
      } else if (req.method === 'GET') {
        need(req, 'r', type);
      } else {
        need(req, req.method === 'POST' ? 'c' : req.method === 'DELETE' ? 'd' : 'u', type);
      }
    });

    app.get('/metadata', async (req, reply) =>
      sendJson(req, reply, 200, buildCapabilityStatement({
        baseUrl: ctxOf(req).baseUrl,
        software: { name: 'Tributary', version: opts.softwareVersion ?? '0' },
        params: app.fhir.params,
        interactions: INTERACTIONS,
        systemInteractions: SYSTEM_INTERACTIONS,
        formats: ['application/fhir+json', 'json'],
        patchFormats: ['application/json-patch+json'],
        operations: [{ name: 'reindex', definition: 'http://hapifhir.io/fhir/OperationDefinition/Reindex' }],
        typeOperations: opts.everything === false ? {} : { Patient: [{ name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' }] },
        oauth: { authorize: `${app.config.baseUrl}/oauth2/authorize`, token: `${app.config.baseUrl}/oauth2/token`, revoke: `${app.config.baseUrl}/oauth2/revoke` },
      })),
    );

    app.post('/', async (req, reply) => {
      const bundle = checkBundle(req.body);
      const ctx = ctxOf(req);
      const granted = grants.get(req);
      if (granted) entryGrants.set(ctx, granted);
      const out = bundle.type === 'transaction' ? await processTransaction(app.fhir, ctx, bundle, readEntry) : await processBatch(app.fhir, ctx, bundle, readEntry);
      for (const e of out.entry ?? []) {
        if (e.response?.location && !/^https?:/.test(e.response.location)) e.response.location = `${ctx.baseUrl}/${e.response.location}`;
      }
      return sendJson(req, reply, 200, out);
    });

    app.get('/_history', async (req, reply) => history(req, reply));
    app.get('/:type/_history', async (req, reply) => history(req, reply, (req.params as { type: string }).type));
    app.get('/:type/:id/_history', async (req, reply) => {
      const p = req.params as { type: string; id: string };
      return history(req, reply, p.type, p.id);
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
      const result = await app.fhir.search.search(ctxOf(req), [type], searchQuery(req), { strict: strict(req), compartment, path, grants: grants.get(req) });
      return sendJson(req, reply, 200, result.json());
    };
    const systemSearch = async (req: FastifyRequest, reply: FastifyReply) => {
      const query = searchQuery(req);
      const types = query.has('_type') ? parseTypes(query.getAll('_type').join(',')) : null;
      return sendJson(req, reply, 200, (await app.fhir.search.search(ctxOf(req), types, query, { strict: strict(req), path: '', grants: grants.get(req) })).json());
    };
    // $reindex: a background job that recomputes the index rows of what is stored (after a
    // SearchParameter was added); 202 with a Content-Location to poll for its state.
    const reindex = async (req: FastifyRequest, reply: FastifyReply, type?: string) => {
      if (type) checkType(type);
      const ctx = ctxOf(req);
      if (ctx.ownerId !== null) throw fhirError(403, 'forbidden', '$reindex works on all of an app\'s data: call it with the app\'s credentials (x-oneup-user-id: client).');
      const id = await app.jobs.send(REINDEX_QUEUE, { partitionId: ctx.partitionId, types: type ? [type] : undefined } satisfies ReindexJob);
      reply.header('Content-Location', `${ctx.baseUrl}/$reindex/${id}`);
      return sendOutcome(req, reply, 202, informational(`Reindexing ${type ?? 'every resource'} in the background; GET ${ctx.baseUrl}/$reindex/${id} tells how far it is.`));
    };
    app.post('/$reindex', async (req, reply) => reindex(req, reply));
    app.post('/:type/$reindex', async (req, reply) => reindex(req, reply, (req.params as { type: string }).type));
    app.get('/$reindex/:job', async (req, reply) => {
      const { job: jobId } = req.params as { job: string };
      if (!/^[0-9a-f-]{36}$/.test(jobId)) throw notFoundError(`No reindex job ${jobId.slice(0, 64)}.`);
      const job = await app.jobs.getJobById<ReindexJob>(REINDEX_QUEUE, jobId);
      if (!job || job.data.partitionId !== ctxOf(req).partitionId) throw notFoundError(`No reindex job ${jobId}.`);
      const processed = (job.output as { processed?: number } | null)?.processed;
      return sendJson(req, reply, 200, {
        resourceType: 'Parameters',
        parameter: [
          { name: 'status', valueCode: job.state },
          ...(processed === undefined ? [] : [{ name: 'processed', valueInteger: processed }]),
        ],
      });
    });
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

    // Patient/[id]/$everything: the patient and every resource of its compartment that the token may
    // search, with what they reference (_include=*); `_since` keeps what changed after an instant,
    // `_type` some types; paged like a search (the next links carry `_lastUpdated=gt` for `_since`).
    if (opts.everything !== false) {
      app.get('/Patient/:id/$everything', async (req, reply) => {
        const { id } = req.params as { id: string };
        checkId(id);
        const query = new URLSearchParams(req.url.split('?')[1] ?? '');
        for (const k of query.keys()) {
          if (!EVERYTHING_PARAMS.has(k)) throw badRequest(`Patient/$everything takes _since, _type and _count (and the paging links' parameters), not "${k.slice(0, 50)}".`);
        }
        let types = patientCompartmentTypes();
        if (query.has('_type')) {
          const asked = new Set(parseTypes(query.getAll('_type').join(',')));
          types = types.filter((t) => asked.has(t));
        }
        // The types the token may search (filters applied to them by the engine, like what they include).
        const granted = grants.get(req);
        if (granted) types = types.filter((t) => allowed(granted, 's', t) !== 'denied');
        if (!types.length) throw fhirError(403, 'forbidden', "The access token's scopes (or _type) leave no type of the patient's compartment to return.");
        const since = query.get('_since');
        if (since !== null) {
          query.append('_lastUpdated', `gt${dateParam(since, '_since')!.toISOString()}`);
          query.delete('_since');
        }
        query.set('_include', '*');
        const result = await app.fhir.search.search(ctxOf(req), types, query, { compartment: { type: 'Patient', id }, path: `Patient/${id}/$everything`, grants: granted });
        return sendJson(req, reply, 200, result.json());
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
      if (!ct.startsWith('application/json-patch+json')) throw fhirError(415, 'not-supported', 'PATCH takes a JSON Patch (Content-Type: application/json-patch+json).');
      const ifMatch = single(req.headers['if-match'], 'If-Match');
      return sendWrite(req, reply, await app.fhir.patch(ctxOf(req), type, id, req.body, { ifMatch }));
    });
    app.delete('/:type/:id', async (req, reply) => {
      const { type, id } = req.params as { type: string; id: string };
      const version = await app.fhir.delete(ctxOf(req), type, id);
      if (version !== undefined) reply.header('ETag', etag(version));
      return sendOutcome(req, reply, 200, informational(version === undefined ? `${type}/${id} did not exist or was already deleted.` : `${type}/${id} deleted.`));
    });
    app.delete('/:type', async (req, reply) => {
      const { type } = req.params as { type: string };
      const query = req.url.split('?')[1];
      if (!query) throw fhirError(405, 'not-supported', `DELETE ${type} needs an id or a search condition.`);
      const n = await app.fhir.conditionalDelete(ctxOf(req), type, query);
      return sendOutcome(req, reply, 200, informational(n ? `Deleted the ${type} that matched.` : `No ${type} matched; nothing deleted.`));
    });

    app.setNotFoundHandler((req, reply) => sendOutcome(req, reply, 404, outcome('error', 'not-found', `No FHIR interaction at ${req.method} ${req.url.split('?')[0]}.`)));
}

function intParam(v: string | undefined, fallback: number, min: number, max: number, name: string): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw badRequest(`${name} must be an integer of at least ${min}.`);
  return Math.min(n, max);
}

function dateParam(v: string | undefined, name: string): Date | undefined {
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (!/^\d{4}-\d{2}-\d{2}/.test(v) || Number.isNaN(t)) throw badRequest(`${name} must be a FHIR instant such as 2024-05-01T10:00:00Z.`);
  return new Date(t);
}

