/**
 * The built-in sandbox health systems (src/sandbox/systems.ts), served by this server when
 * SANDBOXES is on (the default; turn it off in production). Each is:
 * - an app of this server: its patients are the app's users (each signs in with a username and
 *   password on the SMART sign-in page, branded with the system's name), its records the app's
 *   data, each patient's owned by that patient; its access tokens live SANDBOX_ACCESS_TOKEN_SECONDS;
 * - a FHIR base, `/sandbox/{name}/fhir/r4`, that answers that app's tokens only, with its own
 *   `.well-known/smart-configuration` (naming the one client authentication it accepts);
 * - a system of the directory, under a fixed id, and Tributary's client registration there (the
 *   secret sealed with the configured key).
 * The records are written in the background on first start (generated from the system's seed);
 * `app.sandboxesLoaded` settles when they are.
 *
 * Fault switches, for tests of what connects (admin API, `Authorization: Bearer <ADMIN_KEY>`):
 *   PUT /admin/sandbox/{name}/faults {"fail": {"count", "status": 500|503|429, "retryAfter"},
 *     "slow": {"count", "ms"}, "malformed": {"count"}} · GET (what is left) · DELETE (all off)
 *   POST /admin/sandbox/{name}/expire-access-tokens · POST /admin/sandbox/{name}/revoke-refresh-tokens
 * and of what a sync sees next:
 *   POST /admin/sandbox/{name}/records {"username", "type", "action": "change"|"enter-in-error"|"delete", "count"}
 *   POST /admin/sandbox/{name}/big-patient {"resources": N} · POST /admin/sandbox/{name}/expire-page-tokens
 * A system may be a simulated vendor (SandboxDefinition.vendor): then its public base is the
 * vendor's facade (plugins/vendor-sandbox.ts, src/sandbox/vendors/).
 */
import { sendApiError } from '../src/errors/http.ts';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { makeBigPatient, parseBigPatient } from '../src/sandbox/big.ts';
import { MutateError, mutateRecords, parseMutation } from '../src/sandbox/mutate.ts';
import { createVendorFacade } from '../src/sandbox/vendors/registry.ts';
import { Faults, malform, parseFaults } from '../src/sandbox/faults.ts';
import { publicBasePath } from '../src/sandbox/paths.ts';
import { ensureSandboxApp } from '../src/sandbox/registration.ts';
import { loadSandboxRecords } from '../src/sandbox/records.ts';
import { listInDirectory } from '../src/sandbox/directory-listing.ts';
import { adminOnly } from './admin.ts';
import { fromThisMachine, sandboxesLocalOnly } from './loopback.ts';
import fhirRoutes from './fhir.ts';
import { smartConfiguration } from './smart.ts';
import { registerInternalRoutes, registerPublicRoutes, registerTokenEndpoint } from './vendor-sandbox.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Settles when every sandbox system's records are written (at once when sandboxes are off). */
    sandboxesLoaded: Promise<void>;
  }
}

export { SANDBOX_VENDOR } from '../src/sandbox/directory-listing.ts';

export default fp(
  async function sandbox(app: FastifyInstance) {
    let loaded: () => void = () => {};
    app.decorate('sandboxesLoaded', new Promise<void>((r) => (loaded = r)));
    if (!app.config.sandboxes) {
      loaded();
      return;
    }
    const defs = app.config.sandboxSystems;
    const apps = new Map<string, number>();
    const faults = new Map(defs.map((d) => [d.name, new Faults()]));
    const facades = new Map(defs.filter((d) => d.vendor).map((d) => [d.name, createVendorFacade(d.vendor!)]));
    // Unless SANDBOXES_PUBLIC: from this machine only (plugins/loopback.ts); the sign-in is checked
    // where it starts (plugins/smart.ts).
    const localOnly = (fhir: boolean) => async (req: FastifyRequest, reply: FastifyReply) => {
      if (app.config.sandboxesPublic || fromThisMachine(req)) return;
      if (!fhir) return sendApiError(reply, 'sandbox_local_only', sandboxesLocalOnly, false);
      return reply
        .code(403)
        .header('Content-Type', 'application/fhir+json')
        .send({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'forbidden', diagnostics: sandboxesLocalOnly }] });
    };

    await app.register(
      async (admin) => {
        admin.addHook('onRequest', localOnly(false));
        admin.addHook('onRequest', adminOnly(app));
        const target = (req: FastifyRequest, reply: FastifyReply) => {
          const { name } = req.params as { name: string };
          const def = defs.find((d) => d.name === name);
          if (!def)
            sendApiError(
              reply,
              'no_such_sandbox',
              `No sandbox system is named ${name.slice(0, 64)}; they are ${defs.map((d) => d.name).join(', ')}.`,
              false,
            );
          return def;
        };
        admin.get('/:name/faults', async (req, reply) => {
          const def = target(req, reply);
          return def ? faults.get(def.name)!.current : reply;
        });
        admin.put('/:name/faults', async (req, reply) => {
          const def = target(req, reply);
          if (!def) return reply;
          const settings = parseFaults(req.body);
          if (typeof settings === 'string') return sendApiError(reply, 'invalid_parameter', settings, false);
          faults.get(def.name)!.set(settings);
          return settings;
        });
        admin.delete('/:name/faults', async (req, reply) => {
          const def = target(req, reply);
          if (def) faults.get(def.name)!.clear();
          return def ? reply.code(204).send() : reply;
        });
        // Act at once, on every token the system issued.
        admin.post('/:name/expire-access-tokens', async (req, reply) => {
          const def = target(req, reply);
          return def ? { expired: await app.auth.endTokens(apps.get(def.name)!, 'access') } : reply;
        });
        admin.post('/:name/revoke-refresh-tokens', async (req, reply) => {
          const def = target(req, reply);
          return def ? { revoked: await app.auth.endTokens(apps.get(def.name)!, 'refresh') } : reply;
        });
        // A simulated vendor's page sessions, cursors and continuations, ended now.
        admin.post('/:name/expire-page-tokens', async (req, reply) => {
          const def = target(req, reply);
          if (!def) return reply;
          const facade = facades.get(def.name);
          return { expired: facade ? facade.expirePages() : 0 };
        });
        // Changes at the source, for tests of what a sync sees next (src/sandbox/mutate.ts).
        admin.post('/:name/records', async (req, reply) => {
          const def = target(req, reply);
          if (!def) return reply;
          const m = parseMutation(req.body);
          if (typeof m === 'string') return sendApiError(reply, 'invalid_parameter', m, false);
          try {
            return await mutateRecords({ pool: app.pg, bulk: app.fhir }, apps.get(def.name)!, m);
          } catch (err) {
            if (err instanceof MutateError) return sendApiError(reply, err.code, err.message, false);
            throw err;
          }
        });
        // One patient of about N resources, made once (src/sandbox/big.ts).
        admin.post('/:name/big-patient', async (req, reply) => {
          const def = target(req, reply);
          if (!def) return reply;
          const n = parseBigPatient(req.body);
          if (typeof n === 'string') return sendApiError(reply, 'invalid_parameter', n, false);
          return makeBigPatient({ pool: app.pg, bulk: app.fhir, auth: app.auth }, apps.get(def.name)!, { resources: n, idPrefix: def.idPrefix });
        });
      },
      { prefix: '/admin/sandbox' },
    );

    const registration = {
      pool: app.pg,
      auth: app.auth,
      clientKeys: app.clientKeys,
      vault: app.vault,
      log: app.log,
      baseUrl: app.config.baseUrl,
      accessTokenSeconds: app.config.sandboxAccessTokenSeconds,
    };
    for (const def of defs) {
      const appId = await ensureSandboxApp(registration, def);
      apps.set(def.name, appId);
      const prefix = publicBasePath(def);
      app.hostedSystems.set(appId, { fhirBase: `${app.config.baseUrl}${prefix}`, title: def.title, loading: true });
      const facade = facades.get(def.name);
      // A simulated vendor: its ordinary routes internal, its token endpoint its own.
      const internal = facade ? await registerInternalRoutes(app, def, appId) : undefined;
      if (facade) await registerTokenEndpoint(app, def, facade);
      // The system's routes, in a context of their own whose hooks play its fault switches on each
      // of its requests (and no other).
      const switches = faults.get(def.name)!;
      await app.register(async (system) => {
        const malformed = new WeakSet<FastifyRequest>();
        system.addHook('onRequest', localOnly(true));
        system.addHook('onRequest', async (req, reply) => {
          const plan = switches.next();
          if (!plan) return;
          if (plan.delayMs) await new Promise((r) => setTimeout(r, plan.delayMs));
          if (plan.malform) malformed.add(req);
          if (!plan.fail) return;
          if (plan.fail.retryAfter !== undefined) reply.header('Retry-After', String(plan.fail.retryAfter));
          return reply
            .code(plan.fail.status)
            .header('Content-Type', 'application/fhir+json')
            .send({
              resourceType: 'OperationOutcome',
              issue: [
                {
                  severity: 'error',
                  code: plan.fail.status === 429 ? 'throttled' : 'transient',
                  diagnostics: 'A fault switch of this sandbox system.',
                },
              ],
            });
        });
        system.addHook('onSend', async (req, reply, payload) =>
          malformed.has(req) && reply.statusCode === 200 && typeof payload === 'string' ? malform(payload) : payload,
        );
        if (facade) {
          registerPublicRoutes(system, app, def, facade, internal!);
          return;
        }
        await system.register(fhirRoutes, { prefix, onlyApp: appId, everything: def.everything });
        system.get(`${prefix}/.well-known/smart-configuration`, async () => smartConfiguration(app.config.baseUrl, [def.auth]));
      });
    }
    await listInDirectory({ pool: app.pg, allow: app.outbound.allow, baseUrl: app.config.baseUrl }, defs);

    app.addHook('onReady', async () => {
      // Not awaited: the server answers while the records are written.
      const records = { pool: app.pg, bulk: app.fhir, auth: app.auth, log: app.log, years: app.config.sandboxYears };
      void (async () => {
        for (const def of defs) {
          await loadSandboxRecords(records, def, apps.get(def.name)!);
          app.hostedSystems.get(apps.get(def.name)!)!.loading = false;
        }
      })()
        .catch((err) => app.log.error({ err: String(err) }, 'a sandbox system could not be loaded; it is tried again on the next start'))
        .finally(() => {
          // Whatever came of it, sign-ins are answered as they are now.
          for (const id of apps.values()) app.hostedSystems.get(id)!.loading = false;
          loaded();
        });
    });
  },
  { name: 'sandbox', dependencies: ['db', 'core', 'auth', 'directory'] },
);
