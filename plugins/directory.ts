/**
 * The health-system directory on the server:
 * - on a start where the shipped lists in `directory/lantern/` (by a hash of their content) have not
 *   been imported yet (trb_directory_import), they are imported in the background while the server
 *   already serves everything else (DIRECTORY_AUTOLOAD=false turns it off); several processes
 *   starting together import once (an advisory lock). Then the FHIR
 *   view (src/directory/fhir-view.ts) catches up, on every start;
 * - with DIRECTORY_PROBE_CRON, a pg-boss job probes every system's status on that schedule
 *   (src/directory/probe.ts); off by default;
 * - `GET /connect?client_id=..&access_token=..`: the page where a person picks their health system
 *   (a search box with results as they type); each result leads to that system's connect URL,
 *   `/connect/system/clinical/{id}?client_id=..&access_token=..`. The page searches through
 *   `GET /connect/systems?query=..` with the user's token as a Bearer header;
 * - `GET /connect/system/clinical` (app credentials), 1upHealth's shape: `query` (name, city or
 *   address words), `offset`, 20 a page, `system_type` accepted; also `zip`, `state`, `npi`,
 *   `vendor`, `fhir_version` and `url` (a URL or domain).
 */
import fp from 'fastify-plugin';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { importDirectory } from '../src/directory/importer.ts';
import { inTransaction } from '../src/storage/transaction.ts';
import { currentIndex, searchSystems } from '../src/directory/search.ts';
import { DEFAULT_PROBE, probeSystems } from '../src/directory/probe.ts';
import { syncFhirView } from '../src/directory/fhir-view.ts';
import { requestParam } from './auth.ts';
import { PICKER_JS, pickerError, pickerPage } from './picker.ts';

/** The shipped lists, beside the code (not the working directory). */
export const SHIPPED_DIRECTORY = path.resolve(import.meta.dirname, '..', 'directory', 'lantern');
const AUTOLOAD_LOCK = 0x7472_6469_72; // any constant
const PAGE = 20;
const PROBE_QUEUE = 'directory-probe';

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

    /** A search of the directory from a request's parameters, in 1upHealth's shape; undefined: a 400 was sent. */
    const search = async (req: FastifyRequest, reply: FastifyReply) => {
      const param = (name: string) => {
        const v = requestParam(req, name);
        return v && v.length <= 200 ? v : undefined;
      };
      const offset = Number(param('offset') ?? 0);
      if (!Number.isInteger(offset) || offset < 0 || offset > 100_000) return reply.code(400).send({ success: false, error: 'offset must be a whole number from 0 to 100,000.' });
      const systemType = param('system_type');
      if (systemType && systemType !== 'clinical') return reply.code(400).send({ success: false, error: 'system_type is clinical (the only kind of system in this directory).' });
      const hits = await searchSystems(app.pg, {
        text: param('query'),
        zip: param('zip'),
        state: param('state'),
        npi: param('npi'),
        vendor: param('vendor'),
        fhirVersion: param('fhir_version'),
        url: param('url'),
        offset,
        limit: PAGE,
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
      if (!client) return reply.code(401).send({ success: false, error: 'client_id and client_secret are missing or wrong; pass them as query parameters or headers.' });
      return search(req, reply);
    });

    // The picker page's own search: the user's token (the page has no app secret to send).
    app.get('/connect/systems', async (req, reply) => {
      const token = app.credentials.bearer(req);
      const access = token ? await app.auth.accessFor(token) : undefined;
      if (!access?.userId) return reply.code(401).send({ success: false, error: 'Send the user\'s access token as Authorization: Bearer.' });
      return search(req, reply);
    });

    app.get('/connect', async (req, reply) => {
      const clientId = requestParam(req, 'client_id');
      const token = requestParam(req, 'access_token');
      const access = token && /^[A-Za-z0-9._~+/=-]{1,512}$/.test(token) ? await app.auth.accessFor(token) : undefined;
      if (!clientId || !access?.userId || access.app.clientId !== clientId) {
        return reply.code(401).header('Content-Type', 'text/html; charset=utf-8').send(pickerError('This link is not valid (the app or the access token is unknown or expired). Go back to the app and try again.'));
      }
      return reply
        .header('Content-Type', 'text/html; charset=utf-8')
        .header('Content-Security-Policy', "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'")
        .header('Cache-Control', 'no-store')
        .header('Referrer-Policy', 'no-referrer')
        .send(pickerPage(access.app.name));
    });
    app.get('/connect/picker.js', async (_req, reply) => reply.header('Content-Type', 'text/javascript; charset=utf-8').header('Cache-Control', 'public, max-age=300').send(PICKER_JS));

    let viewRun: Promise<void> | undefined;
    let viewAgain = false;
    let closing = false;
    app.decorate('updateDirectoryView', () => {
      // A call during a run asks for one more run after it (what it must see may have come too late).
      if (closing) return Promise.resolve();
      if (viewRun) return ((viewAgain = true), viewRun);
      const started = Date.now();
      viewRun = syncFhirView({ pool: app.pg, repo: app.fhir.repo, indexer: app.fhir.indexer }, (done, total) => app.log.info({ done, total }, 'directory: FHIR view, systems written'), () => closing)
        .then((s) => {
          if (s.systems) app.log.info({ ...s, ms: Date.now() - started }, 'directory: FHIR view up to date');
        })
        .catch((err) => app.log.error({ err: String(err) }, 'directory: the FHIR view could not be brought up to date; it will be tried again on the next start'))
        .finally(() => {
          viewRun = undefined;
          if (viewAgain && !closing) void app.updateDirectoryView();
          viewAgain = false;
        });
      return viewRun;
    });
    app.addHook('onClose', async () => {
      closing = true;
      await viewRun;
    });

    if (app.config.directoryProbeCron) {
      await app.jobs.createQueue(PROBE_QUEUE);
      await app.jobs.schedule(PROBE_QUEUE, app.config.directoryProbeCron);
      await app.jobs.work(PROBE_QUEUE, async () => {
        app.log.info({ statuses: await probeSystems(app.pg, { ...DEFAULT_PROBE, fetch: app.outbound.fetch }) }, 'health systems probed');
        await app.updateDirectoryView();
      });
    }
    app.addHook('onReady', async () => {
      // Not awaited: the server answers while the directory loads; its FHIR view follows (and
      // catches up here after an import that was interrupted).
      const tables = app.config.directoryAutoload ? autoload(app) : Promise.resolve();
      void tables.finally(() => {
        // The search index is built before the first search needs it.
        void currentIndex(app.pg)
          .catch((err) => app.log.error({ err: String(err) }, 'directory: the search index could not be built'))
          .finally(loaded);
        void app.updateDirectoryView();
      });
    });
  },
  { name: 'directory', dependencies: ['db', 'core', 'auth', 'jobs', 'outbound'] },
);

/** The shipped lists' files in name order, and a SHA-256 over their names and contents. */
export function shippedDirectory(dir = SHIPPED_DIRECTORY): { sources: { name: string; content: string }[]; sha256: string } {
  const hash = createHash('sha256');
  const sources = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => {
      const content = fs.readFileSync(path.join(dir, f), 'utf8');
      hash.update(`${f}\0${Buffer.byteLength(content)}\0`).update(content);
      return { name: f, content };
    });
  return { sources, sha256: hash.digest('hex') };
}

/**
 * Imports the shipped lists unless an import of exactly these files is recorded: whatever else the
 * directory holds (the sandboxes write theirs first) does not count, and changed lists (an
 * upgrade) are imported again (the importer only writes what changed).
 */
async function autoload(app: FastifyInstance): Promise<void> {
  const started = Date.now();
  try {
    const summary = await inTransaction(app.pg, async (c) => {
      // One process imports; the others wait here, then find the import recorded.
      await c.query('SELECT pg_advisory_xact_lock($1)', [AUTOLOAD_LOCK]);
      const shipped = shippedDirectory();
      const { rows } = await c.query<{ at: Date }>(
        "SELECT imported_at AS at FROM trb_directory_import WHERE source = 'shipped' AND content_sha256 = $1 LIMIT 1",
        [shipped.sha256],
      );
      if (rows.length) {
        app.log.info({ sha256: shipped.sha256.slice(0, 12), importedAt: rows[0].at }, 'health-system directory: the shipped lists are already imported');
        return null;
      }
      app.log.info({ files: shipped.sources.length, sha256: shipped.sha256.slice(0, 12) }, 'loading the health-system directory');
      const s = await importDirectory(app.pg, shipped.sources, (stage, done, total) => {
        if (stage === 'write') app.log.info({ done, total }, 'directory: systems written');
      }, { allow: app.outbound.allow });
      await c.query(
        `INSERT INTO trb_directory_import (source, content_sha256, files, systems, added, updated, rejected_rows)
         VALUES ('shipped', $1, $2, $3, $4, $5, $6)`,
        [shipped.sha256, s.files, s.systems, s.added, s.updated, s.rejected.length],
      );
      return s;
    });
    if (summary) {
      const { rejected, ...counts } = summary;
      app.log.info({ ...counts, rejectedRows: rejected.length, ms: Date.now() - started }, 'health-system directory loaded');
    }
  } catch (err) {
    app.log.error({ err: String(err) }, 'the health-system directory could not be loaded; run npx tributary directory import directory/lantern');
  }
}
