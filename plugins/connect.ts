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
import { createHash, randomBytes } from 'node:crypto';
import fastifyCookie from '@fastify/cookie';
import * as oauth from 'oauth4webapi';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { USER_SCOPE, type App } from '../src/auth/store.ts';
import { parseScopes } from '../src/auth/scopes.ts';
import { authorizeUrl, clientForSystem, ConnectError, connectionSealKey, exchangeCode, revoke, type SystemClient } from '../src/connect/client.ts';
import { readRegistrationsFile, saveRegistration } from '../src/connect/registrations.ts';
import { setWebhook, urlProblem } from '../src/sync/webhooks.ts';
import { RUN_LOCK_SPACE } from '../src/sync/run.ts';
import { writeResources } from '../src/fhir/bulk.ts';
import { inTransaction } from '../src/storage/transaction.ts';
import { addFormParser, requestParam } from './auth.ts';
import { pickerError } from './picker.ts';

const STATE_SECONDS = 600;
/** The connect cookie: a random value per browser, shared by the sign-ins it has under way. */
const BROWSER_COOKIE = 'trb_connect';
const BROWSER_VALUE = /^[A-Za-z0-9_-]{43}$/;
const sha256 = (s: string) => createHash('sha256').update(s).digest();
const NO_KEY =
  'This Tributary server cannot connect health systems: it has no encryption key to keep their tokens with. The operator sets ENCRYPTION_KEY (64 hex characters: openssl rand -hex 32; the same in every process) and restarts it.';

interface SystemRow {
  id: string;
  name: string;
  resource_url: string;
  vendor: string | null;
}

export default async function connectRoutes(app: FastifyInstance) {
  addFormParser(app);
  if (!app.hasRequestDecorator('cookies')) await app.register(fastifyCookie);
  if (!app.vault.ready) {
    app.log.warn('No ENCRYPTION_KEY: with DATABASE_URL this server has no key to keep health-system tokens with, so every connect is refused at the connect URL. Set ENCRYPTION_KEY (openssl rand -hex 32), the same in every process, and restart.');
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

  async function systemById(id: string): Promise<SystemRow | undefined> {
    if (!/^[A-Za-z0-9-.]{1,64}$/.test(id)) return undefined;
    const { rows } = await app.pg.query<SystemRow>('SELECT id, name, resource_url, vendor FROM trb_system WHERE id = $1', [id]);
    return rows[0];
  }

  const clientFor = (system: SystemRow): Promise<SystemClient> => clientForSystem(app.pg, app.vault, system, origin, () => app.clientKeys.load(), app.outbound.fetch);

  /** The app whose credentials the request carries; undefined when a 401 was sent. */
  async function appOf(req: FastifyRequest, reply: FastifyReply): Promise<App | undefined> {
    const client = await app.credentials.app(req);
    if (!client) reply.code(401).send({ success: false, error: 'client_id and client_secret are missing or wrong.' });
    return client;
  }

  // The app's webhook (app credentials): where sync events go, signed with a secret this server
  // issues (Standard Webhooks), returned by the PUT once and never shown again.
  app.put('/connect/webhook', async (req, reply) => {
    const client = await appOf(req, reply);
    if (!client) return reply;
    if (requestParam(req, 'secret') !== undefined) {
      return reply.code(400).send({ success: false, error: 'The server issues the secret: PUT with url alone, and keep the secret the answer carries (it is shown once).' });
    }
    const url = requestParam(req, 'url') ?? '';
    const problem = urlProblem(url, app.config.webhookAllowHttp);
    if (problem) return reply.code(400).send({ success: false, error: problem });
    if (!app.vault.ready) return reply.code(503).send({ success: false, error: 'This server has no encryption key (ENCRYPTION_KEY) to keep the secret with.' });
    const { secret, previousUntil } = await setWebhook(app.pg, app.vault, client.id, url);
    // The secret signs from now on; the one it replaces signs beside it until previous_secret_until.
    return reply.header('Cache-Control', 'no-store').send({ success: true, url, secret, previous_secret_until: previousUntil });
  });
  app.get('/connect/webhook', async (req, reply) => {
    const client = await appOf(req, reply);
    if (!client) return reply;
    const { rows } = await app.pg.query(
      'SELECT url, created_at, CASE WHEN previous_until > now() THEN previous_until END AS previous_secret_until FROM trb_webhook WHERE app_id = $1',
      [client.id],
    );
    return rows[0] ? { success: true, ...rows[0] } : reply.code(404).send({ success: false, error: 'No webhook: PUT /connect/webhook with url.' });
  });
  app.delete('/connect/webhook', async (req, reply) => {
    const client = await appOf(req, reply);
    if (!client) return reply;
    await app.pg.query('DELETE FROM trb_webhook WHERE app_id = $1', [client.id]);
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
    const system = await systemById((req.params as { systemId: string }).systemId);
    if (!system) return backToApp(reply, client, { error: 'invalid_request', error_description: 'There is no such health system in the directory.', state: appState });
    try {
      const sc = await clientFor(system);
      const nonce = randomBytes(32).toString('base64url');
      const state = `${nonce}.${app.vault.sign(nonce)}`;
      const verifier = oauth.generateRandomCodeVerifier();
      // This browser's value: kept when it has one, so the sign-ins it starts side by side all finish.
      const had = req.cookies[BROWSER_COOKIE];
      const browser = had && BROWSER_VALUE.test(had) ? had : randomBytes(32).toString('base64url');
      await app.pg.query(
        `INSERT INTO trb_connect_state (state_sha256, app_id, user_id, system_id, code_verifier_sealed, app_state, expires_at, browser_sha256)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8)`,
        [sha256(state), client.id, access.userId, system.id, app.vault.encrypt(verifier, state, 'connect-verifier'), appState ?? null, STATE_SECONDS, sha256(browser)],
      );
      // Lax, not Strict: the callback is a top-level GET from the health system's site.
      reply.setCookie(BROWSER_COOKIE, browser, { httpOnly: true, sameSite: 'lax', path: '/connect', secure: secureCookie, maxAge: STATE_SECONDS });
      return reply.code(302).header('Location', await authorizeUrl(sc, callbackUrl, state, verifier)).header('Cache-Control', 'no-store').send();
    } catch (err) {
      if (!(err instanceof ConnectError)) throw err;
      return backToApp(reply, client, { error: err.code, error_description: err.message, state: appState });
    }
  });

  app.get('/connect/callback', async (req, reply) => {
    const state = requestParam(req, 'state');
    const [nonce, mac] = (state ?? '').split('.');
    if (!state || !nonce || !mac || !signedHere(nonce, mac)) {
      return page(reply, 400, 'This sign-in did not come from here, or its link was changed. Go back to the app and start again.');
    }
    const browser = req.cookies[BROWSER_COOKIE];
    const bound = browser && BROWSER_VALUE.test(browser) ? sha256(browser) : null;
    // Used once, by the browser that started it: whatever happens next, this state is spent.
    const { rows } = await app.pg.query<{ app_id: number; user_id: string; system_id: string; code_verifier_sealed: Buffer; app_state: string | null }>(
      'DELETE FROM trb_connect_state WHERE state_sha256 = $1 AND expires_at > now() AND browser_sha256 = $2 RETURNING app_id, user_id, system_id, code_verifier_sealed, app_state',
      [sha256(state), bound],
    );
    if (!rows[0]) {
      // Another browser (no cookie, or another's) is refused and spends nothing: deleting the state
      // here would let anyone holding the link cancel the person's sign-in, and the code is not
      // redeemed, so the browser that started can still finish with this same link.
      const live = await app.pg.query('SELECT 1 FROM trb_connect_state WHERE state_sha256 = $1 AND expires_at > now()', [sha256(state)]);
      if (live.rowCount) {
        req.log.info('a connect callback reached another browser than the one that started it: refused');
        return page(reply, 400, 'This sign-in was started in another browser, so nothing was connected here. Finish in the browser where you started: open this same link there, or go back to the app in that browser and start again.');
      }
    }
    const pending = rows[0];
    const client = pending && (await app.auth.appById(pending.app_id));
    if (!pending || !client) return page(reply, 400, 'This sign-in has expired or was already used. Go back to the app and start again.');
    const appState = pending.app_state ?? undefined;
    const fail = (code: string, description: string) => backToApp(reply, client, { error: code, error_description: description, system_id: pending.system_id, state: appState });
    const system = await systemById(pending.system_id);
    if (!system) return fail('invalid_request', 'The health system is no longer in the directory.');
    try {
      const sc = await clientFor(system);
      const tokens = await exchangeCode(sc, new URL(req.url, app.config.baseUrl), state, callbackUrl, app.vault.decrypt(pending.code_verifier_sealed, state, 'connect-verifier'));
      const key = connectionSealKey(pending.user_id, system.id);
      const { rows: made } = await app.pg.query<{ id: string }>(
        `INSERT INTO trb_connection (app_id, user_id, system_id, patient_id, scope, access_token_sealed, refresh_token_sealed, access_expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (user_id, system_id) DO UPDATE SET status = 'active', patient_id = EXCLUDED.patient_id, scope = EXCLUDED.scope,
           access_token_sealed = EXCLUDED.access_token_sealed, refresh_token_sealed = EXCLUDED.refresh_token_sealed,
           access_expires_at = EXCLUDED.access_expires_at, last_error = NULL, updated_at = now()
         RETURNING id::text`,
        [client.id, pending.user_id, system.id, tokens.patient ?? null, tokens.scope, app.vault.encrypt(tokens.accessToken, key, 'connection-token'), tokens.refreshToken ? app.vault.encrypt(tokens.refreshToken, key, 'connection-token') : null, tokens.expiresAt],
      );
      // The first sync starts now (a worker takes it within seconds).
      await app.queueSync(made[0].id);
      return backToApp(reply, client, { success: 'true', system_id: system.id, state: appState });
    } catch (err) {
      if (!(err instanceof ConnectError)) throw err;
      const declined = err.code === 'access_denied';
      return fail(err.code, declined ? 'The person declined at the health system; nothing was connected.' : err.message);
    }
  });

  /**
   * Whether `mac` is this server's signature of `nonce`: Vault.verify compares in constant time
   * (timingSafeEqual on equal lengths), under the current key or a previous one, so a sign-in under
   * way when ENCRYPTION_KEY rotates still finishes.
   */
  const signedHere = (nonce: string, mac: string): boolean => app.vault.ready && app.vault.verify(nonce, mac);

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
      reply.code(401).header('WWW-Authenticate', 'Bearer').send({ success: false, error: "Send the user's access token as Authorization: Bearer." });
      return undefined;
    }
    if (!fullUserGrant(access.scope)) {
      reply
        .code(403)
        .header('WWW-Authenticate', `Bearer error="insufficient_scope", scope="${USER_SCOPE}"`)
        .send({ success: false, error: `This needs the app's token for its user (from the user-management API, scope ${USER_SCOPE}); this token's scopes do not cover managing connections.` });
      return undefined;
    }
    return { appId: access.app.id, userId: access.userId };
  }

  app.get('/connect/connections', async (req, reply) => {
    const who = await tokenUser(req, reply);
    if (!who) return reply;
    // With its state (syncing: its run holds the connection's lock, in this database: pg_locks lists
    // every database's, and another Tributary on the server has connections of the same ids; idle,
    // error, needs_reauth), its last run (when, how it ended, its counts; runs skipped because
    // another held the lock aside),
    // when its access token expires, and per type what the sync saw (src/sync/store.ts): `fetched`,
    // `refused` (why: the system's refusal), `not-granted` (the scopes granted do not cover it: not
    // asked), `failed`; the searches of it refused while others answered; its last full fetch; the
    // checkpoints of its queries. An app tells "no data" (fetched, 0) from "not allowed here".
    const { rows } = await app.pg.query(
      `SELECT c.id::text, c.system_id, s.name AS system_name, s.resource_url, c.status,
         CASE WHEN c.status = 'needs_reauth' THEN 'needs_reauth'
           WHEN EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND l.granted AND l.objsubid = 2 AND l.classid = ${RUN_LOCK_SPACE}::oid AND l.objid = (c.id % 2147483647)::int::oid) THEN 'syncing'
           WHEN r.status IN ('failed', 'running') THEN 'error' ELSE 'idle' END AS state,
         c.patient_id, c.scope, c.created_at, c.access_expires_at, r.started_at AS last_started_at, r.finished_at AS last_finished_at, c.last_sync_at, c.last_success_at, c.last_error,
         CASE WHEN r.id IS NULL THEN NULL ELSE ${RUN_JSON} END AS last_run,
         coalesce((SELECT json_agg(json_build_object('type', t.res_type, 'status', t.status, 'fetched', t.fetched, 'refusal', t.refusal, 'refused_searches', t.refused_variants,
             'error', t.error, 'last_full_at', t.last_full_at, 'updated_at', t.updated_at,
             'checkpoints', (SELECT coalesce(json_object_agg(q.query_key, q.since), '{}') FROM trb_sync_query q
               WHERE q.connection_id = c.id AND q.since IS NOT NULL AND (q.query_key = t.res_type OR q.query_key LIKE t.res_type || '?%')))
             ORDER BY t.res_type)
           FROM trb_sync_type t WHERE t.connection_id = c.id), '[]') AS types
       FROM trb_connection c JOIN trb_system s ON s.id = c.system_id
       LEFT JOIN LATERAL (SELECT * FROM trb_sync_run r WHERE r.connection_id = c.id AND r.status <> 'skipped' ORDER BY r.started_at DESC, r.id DESC LIMIT 1) r ON true
       WHERE c.app_id = $1 AND c.user_id = $2 ORDER BY c.created_at`,
      [who.appId, who.userId],
    );
    return { success: true, entry: rows };
  });

  // The log of a connection's runs, newest first (`limit`, at most 100; `before` a run id, to page),
  // each with the OperationOutcome issues of what it skipped.
  app.get('/connect/connections/:id/runs', async (req, reply) => {
    const who = await tokenUser(req, reply);
    if (!who) return reply;
    const id = (req.params as { id: string }).id;
    const limit = requestParam(req, 'limit') ?? '20';
    const before = requestParam(req, 'before');
    if (!/^\d{1,3}$/.test(limit) || Number(limit) < 1) return reply.code(400).send({ success: false, error: 'limit must be a whole number from 1 to 100.' });
    if (before !== undefined && !/^\d{1,18}$/.test(before)) return reply.code(400).send({ success: false, error: 'before must be the id of a run, from an earlier page.' });
    const mine = /^\d{1,18}$/.test(id) && (await app.pg.query('SELECT 1 FROM trb_connection WHERE id = $1 AND app_id = $2 AND user_id = $3', [id, who.appId, who.userId])).rowCount;
    if (!mine) return reply.code(404).send({ success: false, error: 'No such connection.' });
    const { rows } = await app.pg.query(
      `SELECT ${RUN_JSON} AS run FROM trb_sync_run r WHERE r.connection_id = $1 AND ($2::bigint IS NULL OR r.id < $2) ORDER BY r.id DESC LIMIT $3`,
      [id, before ?? null, Math.min(Number(limit), 100)],
    );
    return { success: true, entry: rows.map((r) => r.run) };
  });

  app.delete('/connect/connections/:id', async (req, reply) => {
    const who = await tokenUser(req, reply);
    if (!who) return reply;
    const id = (req.params as { id: string }).id;
    if (!/^\d{1,18}$/.test(id)) return reply.code(404).send({ success: false, error: 'No such connection.' });
    const purge = requestParam(req, 'purge') === 'true';
    const { rows } = await app.pg.query<{ system_id: string; user_id: string; access_token_sealed: Buffer; refresh_token_sealed: Buffer | null }>(
      'DELETE FROM trb_connection WHERE id = $1 AND app_id = $2 AND user_id = $3 RETURNING system_id, user_id, access_token_sealed, refresh_token_sealed',
      [id, who.appId, who.userId],
    );
    const gone = rows[0];
    if (!gone) return reply.code(404).send({ success: false, error: 'No such connection.' });
    const system = (await systemById(gone.system_id))!;
    // Best effort: the connection is forgotten here whether or not the system takes the revocation.
    let revoked = false;
    try {
      const key = connectionSealKey(gone.user_id, gone.system_id);
      const sc = await clientFor(system);
      revoked = await revoke(sc, app.vault.decrypt(gone.refresh_token_sealed ?? gone.access_token_sealed, key, 'connection-token'));
    } catch (err) {
      req.log.warn({ system: system.id, err: String(err) }, 'the tokens could not be revoked at the health system');
    }
    let purged = 0;
    if (purge) purged = await purgeFrom(app, who.appId, who.userId, system.resource_url);
    return { success: true, revoked, purged };
  });
}

/** Every interaction on every type of the user's data, unfiltered: user/*.* (or user/*.cruds). */
function fullUserGrant(scope: string): boolean {
  return parseScopes(scope).some((s) => s.context === 'user' && s.type === '*' && s.interactions.size === 5 && s.filter.length === 0);
}

/** A sync run (`trb_sync_run r`) as the connections API shows it. */
const RUN_JSON = `json_build_object('id', r.id::text, 'started_at', r.started_at, 'finished_at', r.finished_at, 'status', r.status, 'strategy', r.strategy,
  'fetched', r.fetched, 'created', r.created, 'updated', r.updated, 'unchanged', r.unchanged, 'failed', r.failed, 'deleted', r.deleted, 'requests', r.requests, 'error', r.error, 'issues', r.issues)`;

/** Deletes the user's records that came from a system (their meta.source is its FHIR base). */
async function purgeFrom(app: FastifyInstance, appId: number, userId: string, fhirBase: string): Promise<number> {
  return inTransaction(app.pg, async (c) => {
    const { rows } = await c.query<{ res_type: string; fhir_id: string }>(
      `SELECT r.res_type, r.fhir_id FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver
       WHERE r.partition_id = $1 AND r.owner_id = $2 AND r.res_deleted_at IS NULL AND v.source_uri = $3`,
      [appId, userId, fhirBase],
    );
    const { written } = await writeResources(app.fhir, c, { partitionId: appId, ownerId: userId }, rows.map((r) => ({ type: r.res_type, id: r.fhir_id, resource: null })));
    return written;
  });
}
