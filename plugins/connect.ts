/**
 * The connect flow, as 1upHealth's apps use it:
 * 1. GET /connect/system/clinical/{systemId}?client_id=..&access_token=..[&state=..]: the app and
 *    the user's token are checked, the system's SMART configuration discovered, and the person sent
 *    to its authorize endpoint (PKCE S256, a signed single-use state that expires in 10 minutes,
 *    `aud` = the system's FHIR base, the registration's scopes). The state is bound to this browser
 *    (RFC 9700 section 4.7.1): an HttpOnly SameSite=Lax cookie (Path=/connect) holds a random
 *    value whose SHA-256 is kept with the state;
 * 2. GET /connect/callback: the code is exchanged (the client authenticating as the system's
 *    registration says), the connection stored with its tokens sealed, and the person sent back to
 *    the app's redirect URI with `success=true&system_id=..` (and the app's state), or with `error`
 *    and `error_description`. Before the app is known, errors are a page that says what to do. A
 *    callback without the cookie of the browser that started (another browser: a sign-in link sent
 *    to someone else, a forged callback) connects nothing and spends nothing.
 * - GET /connect/connections (the user's token from the user-management API, scope user/*.*;
 *   a SMART app's narrower token gets a 403): the user's connections;
 * - GET /connect/jwks: Tributary's public key, for systems that take private_key_jwt;
 * - PUT/GET/DELETE /connect/webhook (app credentials; url): where sync events go, signed (Standard
 *   Webhooks) with a secret the PUT issues and shows once;
 * - DELETE /connect/connections/{id}[?purge=true] (the user's token): revokes the tokens at the
 *   system when it offers revocation, forgets the connection, and with purge deletes the records
 *   that came from it.
 */
import { sendApiError } from '../src/errors/http.ts';
import fastifyCookie from '@fastify/cookie';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { USER_SCOPE, type App } from '../src/auth/store.ts';
import { ConnectError, type ClientDeps } from '../src/connect/client.ts';
import { connectionRuns, disconnect, listConnections, managesConnections } from '../src/connect/connections.ts';
import { readRegistrationsFile, saveRegistration } from '../src/connect/registrations.ts';
import { BROWSER_COOKIE, finishSignIn, STATE_SECONDS, startSignIn, takeSignIn } from '../src/connect/sign-in.ts';
import { systemById } from '../src/connect/system.ts';
import { removeWebhook, webhookSettings } from '../src/connect/webhook-settings.ts';
import { setWebhook, urlProblem } from '../src/sync/webhooks.ts';
import { addFormParser, requestParam } from './auth.ts';
import { pickerError } from './picker.ts';

const NO_KEY =
  'This Tributary server cannot connect health systems: it has no encryption key to keep their tokens with. The operator sets ENCRYPTION_KEY (64 hex characters: openssl rand -hex 32; the same in every process) and restarts it.';

export default async function connectRoutes(app: FastifyInstance) {
  addFormParser(app);
  if (!app.hasRequestDecorator('cookies')) await app.register(fastifyCookie);
  if (!app.vault.ready) {
    app.log.warn(
      'No ENCRYPTION_KEY: with DATABASE_URL this server has no key to keep health-system tokens with, so every connect is refused at the connect URL. Set ENCRYPTION_KEY (openssl rand -hex 32), the same in every process, and restart.',
    );
  }
  const callbackUrl = `${app.config.baseUrl}/connect/callback`;
  if (app.config.clientRegistrationsFile) {
    // A file that cannot be used stops the start: what it says must hold.
    const registrations = readRegistrationsFile(app.config.clientRegistrationsFile);
    for (const r of registrations) await saveRegistration(app.pg, app.vault, r);
    app.log.info({ file: app.config.clientRegistrationsFile, registrations: registrations.length }, 'client registrations read');
  }
  const origin = new URL(app.config.baseUrl).origin;
  const secureCookie = origin.startsWith('https:');
  // What talking to health systems needs (the discovery cache is the app's, shared with the syncs).
  const deps: ClientDeps = {
    pool: app.pg,
    vault: app.vault,
    ownOrigin: origin,
    clientKey: () => app.clientKeys.load(),
    fetch: app.outbound.fetch,
    discovery: app.discovery,
  };

  const page = (reply: FastifyReply, status: number, message: string) =>
    reply.code(status).header('Content-Type', 'text/html; charset=utf-8').header('Cache-Control', 'no-store').send(pickerError(message));

  /** Back to the app with the outcome; a page when the app registered nowhere to come back to. */
  function backToApp(reply: FastifyReply, client: App, params: Record<string, string | undefined>) {
    const target = client.redirectUris[0];
    if (!target) {
      return params.error
        ? page(reply, 400, `The health system could not be connected: ${params.error_description ?? params.error}`)
        : page(reply, 200, 'Connected. You can close this page and go back to the app.');
    }
    const u = new URL(target);
    for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
    return reply.code(302).header('Location', u.toString()).header('Cache-Control', 'no-store').send();
  }

  /** The app whose credentials the request carries; undefined when a 401 was sent. */
  async function appOf(req: FastifyRequest, reply: FastifyReply): Promise<App | undefined> {
    const client = await app.credentials.app(req);
    if (!client) sendApiError(reply, 'client_unauthenticated', 'client_id and client_secret are missing or wrong.');
    return client;
  }

  // The app's webhook (app credentials): where sync events go, signed with a secret this server
  // issues (Standard Webhooks), returned by the PUT once and never shown again.
  app.put('/connect/webhook', async (req, reply) => {
    const client = await appOf(req, reply);
    if (!client) return reply;
    if (requestParam(req, 'secret') !== undefined) {
      return sendApiError(
        reply,
        'webhook_secret_given',
        'The server issues the secret: PUT with url alone, and keep the secret the answer carries (it is shown once).',
      );
    }
    const url = requestParam(req, 'url') ?? '';
    const problem = urlProblem(url, app.config.webhookAllowHttp);
    if (problem) return sendApiError(reply, 'invalid_parameter', problem);
    if (!app.vault.ready)
      return sendApiError(reply, 'no_encryption_key', 'This server has no encryption key (ENCRYPTION_KEY) to keep the secret with.');
    const { secret, previousUntil } = await setWebhook(app.pg, app.vault, client.id, url);
    // The secret signs from now on; the one it replaces signs beside it until previous_secret_until.
    return reply.header('Cache-Control', 'no-store').send({ success: true, url, secret, previous_secret_until: previousUntil });
  });
  app.get('/connect/webhook', async (req, reply) => {
    const client = await appOf(req, reply);
    if (!client) return reply;
    const settings = await webhookSettings(app.pg, client.id);
    return settings ? { success: true, ...settings } : sendApiError(reply, 'no_webhook', 'No webhook: PUT /connect/webhook with url.');
  });
  app.delete('/connect/webhook', async (req, reply) => {
    const client = await appOf(req, reply);
    if (!client) return reply;
    await removeWebhook(app.pg, client.id);
    return reply.code(204).send();
  });

  // Tributary's public key, for health systems that register it for private_key_jwt.
  app.get('/connect/jwks', async () => app.clientKeys.jwks());

  app.get('/connect/system/clinical/:systemId', async (req, reply) => {
    const clientId = requestParam(req, 'client_id');
    const token = requestParam(req, 'access_token');
    const client = clientId ? await app.auth.appByClientId(clientId) : undefined;
    const access = client && token && /^[A-Za-z0-9._~+/=-]{1,512}$/.test(token) ? await app.auth.accessFor(token) : undefined;
    if (!client || !access?.userId || access.app.id !== client.id) {
      return page(reply, 401, 'This link is not valid: the app or the access token is unknown or expired. Go back to the app and try again.');
    }
    const appState = requestParam(req, 'state')?.slice(0, 500);
    // Before the person leaves for their health system: without a key, the callback could keep nothing.
    if (!app.vault.ready) return backToApp(reply, client, { error: 'server_error', error_description: NO_KEY, state: appState });
    const system = await systemById(app.pg, (req.params as { systemId: string }).systemId);
    if (!system)
      return backToApp(reply, client, {
        error: 'invalid_request',
        error_description: 'There is no such health system in the directory.',
        state: appState,
      });
    try {
      const who = { appId: client.id, userId: access.userId };
      const { location, browser } = await startSignIn(deps, who, system, callbackUrl, appState, req.cookies[BROWSER_COOKIE]);
      // Lax, not Strict: the callback is a top-level GET from the health system's site.
      reply.setCookie(BROWSER_COOKIE, browser, { httpOnly: true, sameSite: 'lax', path: '/connect', secure: secureCookie, maxAge: STATE_SECONDS });
      return reply.code(302).header('Location', location).header('Cache-Control', 'no-store').send();
    } catch (err) {
      if (!(err instanceof ConnectError)) throw err;
      return backToApp(reply, client, { error: err.code, error_description: err.message, state: appState });
    }
  });

  app.get('/connect/callback', async (req, reply) => {
    const state = requestParam(req, 'state');
    const taken = await takeSignIn(app.pg, app.vault, state, req.cookies[BROWSER_COOKIE]);
    if ('refused' in taken && taken.refused === 'forged') {
      return page(reply, 400, 'This sign-in did not come from here, or its link was changed. Go back to the app and start again.');
    }
    if ('refused' in taken && taken.refused === 'other-browser') {
      req.log.info('a connect callback reached another browser than the one that started it: refused');
      return page(
        reply,
        400,
        'This sign-in was started in another browser, so nothing was connected here. Finish in the browser where you started: open this same link there, or go back to the app in that browser and start again.',
      );
    }
    const pending = 'pending' in taken ? taken.pending : undefined;
    const client = pending && (await app.auth.appById(pending.appId));
    if (!pending || !client) return page(reply, 400, 'This sign-in has expired or was already used. Go back to the app and start again.');
    const appState = pending.appState;
    const fail = (code: string, description: string) =>
      backToApp(reply, client, { error: code, error_description: description, system_id: pending.systemId, state: appState });
    const system = await systemById(app.pg, pending.systemId);
    if (!system) return fail('invalid_request', 'The health system is no longer in the directory.');
    try {
      const callback = { url: new URL(req.url, app.config.baseUrl), state: state!, redirectUri: callbackUrl };
      await finishSignIn(deps, pending, system, callback, (id) => app.queueSync(id));
      return backToApp(reply, client, { success: 'true', system_id: system.id, state: appState });
    } catch (err) {
      if (!(err instanceof ConnectError)) throw err;
      const declined = err.code === 'access_denied';
      return fail(err.code, declined ? 'The person declined at the health system; nothing was connected.' : err.message);
    }
  });

  /**
   * The user a request's bearer token acts for; undefined when a 401 or 403 was sent. Only the
   * app's own token for its user (the user-management API's, scope user/*.*) manages connections:
   * a SMART app's token with narrower scopes (patient/Observation.rs) may not list, read the runs
   * of, disconnect or purge them (RFC 6750 section 3.1, insufficient_scope).
   */
  async function tokenUser(req: FastifyRequest, reply: FastifyReply) {
    const token = app.credentials.bearer(req);
    const access = token ? await app.auth.accessFor(token) : undefined;
    if (!access?.userId) {
      sendApiError(reply.header('WWW-Authenticate', 'Bearer'), 'user_token_missing', "Send the user's access token as Authorization: Bearer.");
      return undefined;
    }
    if (!managesConnections(access.scope)) {
      const message = `This needs the app's token for its user (from the user-management API, scope ${USER_SCOPE}); this token's scopes do not cover managing connections.`;
      sendApiError(reply.header('WWW-Authenticate', `Bearer error="insufficient_scope", scope="${USER_SCOPE}"`), 'user_token_scope', message);
      return undefined;
    }
    return { appId: access.app.id, userId: access.userId };
  }

  // The user's connections, with their state, last run and what their syncs saw (src/connect/connections.ts).
  app.get('/connect/connections', async (req, reply) => {
    const who = await tokenUser(req, reply);
    if (!who) return reply;
    return { success: true, entry: await listConnections(app.pg, who) };
  });

  // The log of a connection's runs, newest first (`limit`, at most 100; `before` a run id, to page),
  // each with the OperationOutcome issues of what it skipped.
  app.get('/connect/connections/:id/runs', async (req, reply) => {
    const who = await tokenUser(req, reply);
    if (!who) return reply;
    const id = (req.params as { id: string }).id;
    const limit = requestParam(req, 'limit') ?? '20';
    const before = requestParam(req, 'before');
    if (!/^\d{1,3}$/.test(limit) || Number(limit) < 1) return sendApiError(reply, 'invalid_parameter', 'limit must be a whole number from 1 to 100.');
    if (before !== undefined && !/^\d{1,18}$/.test(before))
      return sendApiError(reply, 'invalid_parameter', 'before must be the id of a run, from an earlier page.');
    const runs = /^\d{1,18}$/.test(id) ? await connectionRuns(app.pg, who, id, before, Math.min(Number(limit), 100)) : undefined;
    if (!runs) return sendApiError(reply, 'no_such_connection', 'No such connection.');
    return { success: true, entry: runs };
  });

  app.delete('/connect/connections/:id', async (req, reply) => {
    const who = await tokenUser(req, reply);
    if (!who) return reply;
    const id = (req.params as { id: string }).id;
    if (!/^\d{1,18}$/.test(id)) return sendApiError(reply, 'no_such_connection', 'No such connection.');
    const purge = requestParam(req, 'purge') === 'true';
    const done = await disconnect({ ...deps, bulk: app.fhir }, who, id, purge, req.log);
    if (!done) return sendApiError(reply, 'no_such_connection', 'No such connection.');
    return { success: true, revoked: done.revoked, purged: done.purged };
  });
}
