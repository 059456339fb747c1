/**
 * The health-system directory on the server:
 * - on a start where the shipped lists in `directory/lantern/` (by a hash of their content) have not
 *   been imported yet (trb_directory_import), they are imported in the background while the server
 *   already serves everything else (DIRECTORY_AUTOLOAD=false turns it off); several processes
 *   starting together import once (an advisory lock). Then the FHIR
 *   view (src/directory/fhir-view.ts) catches up, on every start (src/directory/autoload.ts);
 * - with DIRECTORY_PROBE_CRON, a pg-boss job probes every system's status on that schedule
 *   (src/directory/probe-job.ts); off by default;
 * - `GET /connect?client_id=..&access_token=..`: the page where a person picks their health system
 *   (a search box with results as they type); each result leads to that system's connect URL,
 *   `/connect/system/clinical/{id}?client_id=..&access_token=..`. The page searches through
 *   `GET /connect/systems?query=..` with the user's token as a Bearer header;
 * - `GET /connect/system/clinical` (app credentials), 1upHealth's shape: `query` (name, city or
 *   address words), `offset`, 20 a page, `system_type` accepted; also `zip`, `state`, `npi`,
 *   `vendor`, `fhir_version` and `url` (a URL or domain).
 */
import { sendApiError } from '../src/errors/http.ts';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PROBE_QUEUE } from '../src/jobs/queues.ts';
import { startDirectory } from '../src/directory/autoload.ts';
import { DirectoryIndexCache, PAGE_SIZE, searchSystems } from '../src/directory/search.ts';
import { runProbe } from '../src/directory/probe-job.ts';
import { ViewRefresh } from '../src/directory/view-refresh.ts';
import { requestParam } from './auth.ts';
import { PICKER_JS, pickerError, pickerPage } from './picker.ts';

export { SHIPPED_DIRECTORY, shippedDirectory } from '../src/directory/autoload.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Settles when the first-start import is done (or was not needed): the directory's search answers. */
    directoryLoaded: Promise<void>;
    /** Brings the directory's FHIR view (Organization, Endpoint) up to date; one run at a time per process. */
    updateDirectoryView(): Promise<void>;
  }
}

export default fp(
  async function directory(app: FastifyInstance) {
    let loaded: () => void = () => {};
    app.decorate('directoryLoaded', new Promise<void>((r) => (loaded = r)));
    // The search index of this app's pool (src/directory/search.ts), rebuilt when the directory changes.
    const index = new DirectoryIndexCache(app.pg);

    /** A search of the directory from a request's parameters, in 1upHealth's shape; undefined: a 400 was sent. */
    const search = async (req: FastifyRequest, reply: FastifyReply) => {
      const param = (name: string) => {
        const v = requestParam(req, name);
        return v && v.length <= 200 ? v : undefined;
      };
      const offset = Number(param('offset') ?? 0);
      if (!Number.isInteger(offset) || offset < 0 || offset > 100_000)
        return sendApiError(reply, 'invalid_parameter', 'offset must be a whole number from 0 to 100,000.');
      const systemType = param('system_type');
      if (systemType && systemType !== 'clinical')
        return sendApiError(reply, 'invalid_parameter', 'system_type is clinical (the only kind of system in this directory).');
      const hits = await searchSystems(app.pg, index, {
        text: param('query'),
        zip: param('zip'),
        state: param('state'),
        npi: param('npi'),
        vendor: param('vendor'),
        fhirVersion: param('fhir_version'),
        url: param('url'),
        offset,
        limit: PAGE_SIZE,
      });
      return hits.map((h) => ({
        id: h.id,
        name: h.name,
        resource_url: h.resourceUrl,
        logo: null,
        api_version: h.fhirVersion,
        status: h.status,
        ehr: h.vendor,
        locations: h.locations,
      }));
    };

    app.get('/connect/system/clinical', async (req, reply) => {
      const client = await app.credentials.app(req);
      if (!client)
        return sendApiError(
          reply,
          'client_unauthenticated',
          'client_id and client_secret are missing or wrong; pass them as query parameters or headers.',
        );
      return search(req, reply);
    });

    // The picker page's own search: the user's token (the page has no app secret to send).
    app.get('/connect/systems', async (req, reply) => {
      const token = app.credentials.bearer(req);
      const access = token ? await app.auth.accessFor(token) : undefined;
      if (!access?.userId) return sendApiError(reply, 'user_token_missing', "Send the user's access token as Authorization: Bearer.");
      return search(req, reply);
    });

    app.get('/connect', async (req, reply) => {
      const clientId = requestParam(req, 'client_id');
      const token = requestParam(req, 'access_token');
      const access = token && /^[A-Za-z0-9._~+/=-]{1,512}$/.test(token) ? await app.auth.accessFor(token) : undefined;
      if (!clientId || !access?.userId || access.app.clientId !== clientId) {
        return reply
          .code(401)
          .header('Content-Type', 'text/html; charset=utf-8')
          .send(pickerError('This link is not valid (the app or the access token is unknown or expired). Go back to the app and try again.'));
      }
      return reply
        .header('Content-Type', 'text/html; charset=utf-8')
        .header(
          'Content-Security-Policy',
          "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
        )
        .header('Cache-Control', 'no-store')
        .header('Referrer-Policy', 'no-referrer')
        .send(pickerPage(access.app.name));
    });
    app.get('/connect/picker.js', async (_req, reply) =>
      reply.header('Content-Type', 'text/javascript; charset=utf-8').header('Cache-Control', 'public, max-age=300').send(PICKER_JS),
    );

    const view = new ViewRefresh({ pool: app.pg, repo: app.fhir.repo, indexer: app.fhir.indexer }, app.log);
    app.decorate('updateDirectoryView', () => view.update());
    app.addHook('onClose', async () => view.close());

    if (app.config.directoryProbeCron) {
      await app.jobs.schedule(PROBE_QUEUE, app.config.directoryProbeCron);
      const deps = { pool: app.pg, fetch: app.outbound.fetch, log: app.log, updateView: () => app.updateDirectoryView() };
      await app.jobs.work(PROBE_QUEUE, ([job]) => runProbe(job, deps));
    }
    app.addHook('onReady', async () => {
      // Not awaited: the server answers while the directory loads; its FHIR view follows (and
      // catches up here after an import that was interrupted).
      const deps = { pool: app.pg, allow: app.outbound.allow, log: app.log, index, updateView: () => app.updateDirectoryView() };
      void startDirectory(deps, app.config.directoryAutoload).finally(loaded);
    });
  },
  { name: 'directory', dependencies: ['db', 'core', 'auth', 'jobs', 'outbound'] },
);
