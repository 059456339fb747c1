/**
 * Bulk Data export's routes under a FHIR base (src/export/operation.ts decides): registered by the
 * FHIR plugin in its own scope, so that its credentials check covers them.
 * See: https://hl7.org/fhir/uv/bulkdata/export.html
 */
import { pipeline, Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ResourceScope } from '../src/auth/scopes.ts';
import type { RequestContext } from '../src/fhir/ports.ts';
import { deleteExport, exportFile, exportStatus, POLL_SECONDS, startExport, type ExportOperationDeps } from '../src/export/operation.ts';
import type { ExportLevel } from '../src/export/request.ts';
import { sendOutcome } from './fhir-http.ts';
import { FhirError } from '../src/fhir/errors.ts';

/** The Retry-After of a kick-off refused because the app's exports are at their limit (seconds). */
const THROTTLED_RETRY_SECONDS = 30;

export interface ExportRouteContext {
  ctxOf: (req: FastifyRequest) => RequestContext;
  grantsOf: (req: FastifyRequest) => ResourceScope[] | undefined;
}

/** Whether an Accept-Encoding takes gzip (not refused with q=0). */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  const value = Array.isArray(header) ? header.join(',') : (header ?? '');
  return value.split(',').some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    if (coding.trim() !== 'gzip' && coding.trim() !== 'x-gzip') return false;
    const q = params.map((x) => x.trim()).find((x) => x.startsWith('q='));
    return !q || Number(q.slice(2)) > 0;
  });
}

export function exportRoutes(app: FastifyInstance, r: ExportRouteContext): void {
  const deps = (): ExportOperationDeps => ({ pool: app.pg, jobs: app.jobs, search: app.fhir.search, ttlSeconds: app.config.exportTtlHours * 3600 });

  const kickoff = async (req: FastifyRequest, reply: FastifyReply, level: ExportLevel, groupId?: string) => {
    const started = await startExport(deps(), r.ctxOf(req), r.grantsOf(req), {
      level,
      groupId,
      query: new URLSearchParams(req.url.split('?')[1] ?? ''),
      body: req.method === 'POST' ? req.body : undefined,
      requestUrl: `${app.config.baseUrl}${req.url}`,
      prefer: typeof req.headers.prefer === 'string' ? req.headers.prefer : undefined,
    }).catch((err) => {
      // Too many exports running: when to try again (Bulk Data: a 429 with Retry-After).
      if (err instanceof FhirError && err.status === 429) reply.header('Retry-After', String(THROTTLED_RETRY_SECONDS));
      throw err;
    });
    reply.header('Content-Location', started.location);
    return sendOutcome(req, reply, 202, started.outcome);
  };
  for (const method of ['GET', 'POST'] as const) {
    app.route({ method, url: '/$export', handler: (req, reply) => kickoff(req, reply, 'system') });
    app.route({ method, url: '/Patient/$export', handler: (req, reply) => kickoff(req, reply, 'patient') });
    app.route({ method, url: '/Group/:id/$export', handler: (req, reply) => kickoff(req, reply, 'group', (req.params as { id: string }).id) });
  }

  app.get('/$export-status/:id', async (req, reply) => {
    const status = await exportStatus(deps(), r.ctxOf(req), (req.params as { id: string }).id);
    if (status.state === 'running') {
      reply.header('X-Progress', status.progress).header('Retry-After', String(POLL_SECONDS));
      return reply.code(202).send();
    }
    if (status.state === 'failed') return sendOutcome(req, reply, 500, status.outcome);
    reply.header('Expires', new Date(Date.now() + 60_000).toUTCString());
    return reply.code(200).type('application/json').send(JSON.stringify(status.manifest));
  });
  app.delete('/$export-status/:id', async (req, reply) =>
    sendOutcome(req, reply, 202, await deleteExport(deps(), r.ctxOf(req), (req.params as { id: string }).id)),
  );
  app.get('/$export-file/:id/:n', async (req, reply) => {
    const p = req.params as { id: string; n: string };
    const file = await exportFile(deps(), r.ctxOf(req), p.id, p.n);
    reply.code(200).type('application/fhir+ndjson').header('Vary', 'Accept-Encoding');
    // Compressed when asked for (Bulk Data: servers should offer gzip), at zlib's fastest level:
    // NDJSON shrinks 5-10 times even so, and a download costs the API process little CPU.
    if (acceptsGzip(req.headers['accept-encoding'])) {
      return reply.header('Content-Encoding', 'gzip').send(pipeline(Readable.from(file.body), createGzip({ level: 1 }), () => {}));
    }
    return reply.header('Content-Length', String(file.bytes)).send(Readable.from(file.body));
  });
}
