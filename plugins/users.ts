/**
 * 1upHealth's user-management API and the OAuth2 token endpoints, with their paths and shapes:
 * - POST/GET/PUT /user-management/v1/user, POST /user-management/v1/user/auth-code
 * - POST /oauth2/token (also /fhir/oauth2/token), parameters in a form body or the query string
 * - POST /oauth2/introspect (RFC 7662), POST /oauth2/revoke (RFC 7009)
 * The four OAuth endpoints take TOKEN_RATE_LIMIT requests a minute per client address and per
 * client_id (then 429 slow_down with Retry-After).
 * See: https://1up.health/dev/reference/user-management, RFC 6749 section 5.
 */
import { sendApiError } from '../src/errors/http.ts';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import { OAuthError, type App, type User } from '../src/auth/store.ts';
import { assertedClient, secretClient } from '../src/auth/token-client.ts';
import { grantTokens } from '../src/auth/token-grant.ts';
import { addFormParser, claimedClientId, requestParam as param } from './auth.ts';

const APP_USER_ID = /^[\x21-\x7e]{1,200}$/;
const PAGE = 100;

function oauthError(reply: FastifyReply, err: OAuthError): FastifyReply {
  reply.header('Cache-Control', 'no-store');
  if (err.status === 401) reply.header('WWW-Authenticate', 'Basic realm="tributary"');
  return reply.code(err.status).send({ error: err.error, error_description: err.message });
}

export default async function userRoutes(app: FastifyInstance) {
  addFormParser(app);

  // --- user management -----------------------------------------------------------------------

  /** The calling app, counted against its hourly limit; undefined once the reply is sent. */
  async function callingApp(req: FastifyRequest, reply: FastifyReply): Promise<App | undefined> {
    const client = await app.credentials.app(req);
    if (!client) {
      sendApiError(
        reply,
        'client_unauthenticated',
        'client_id and client_secret are missing or wrong; pass them as query parameters, form fields or headers.',
      );
      return undefined;
    }
    const rate = await app.auth.countCall(client.id, app.config.userApiRateLimit);
    if (!rate.ok) {
      const message = `more than ${app.config.userApiRateLimit} user-management calls this hour; retry after ${rate.retryAfter} s`;
      sendApiError(reply.header('Retry-After', String(rate.retryAfter)), 'rate_limited', message);
      return undefined;
    }
    return client;
  }

  const entryOf = (u: User) => ({ oneup_user_id: Number(u.id), app_user_id: u.appUserId, active: u.active });
  /** A new code for the user, in 1upHealth's answer shape. */
  const codeFor = async (client: App, user: User) => ({ success: true, code: await app.auth.newCode(client.id, user.id), ...entryOf(user) });

  app.post('/user-management/v1/user', async (req, reply) => {
    const client = await callingApp(req, reply);
    if (!client) return reply;
    const appUserId = param(req, 'app_user_id');
    if (!appUserId || !APP_USER_ID.test(appUserId))
      return sendApiError(reply, 'invalid_parameter', 'app_user_id is required: 1 to 200 visible ASCII characters.');
    const user = await app.auth.createUser(client.id, appUserId);
    if (!user) return sendApiError(reply, 'user_exists', 'this user already exists', false);
    return reply.send(await codeFor(client, user));
  });

  app.get('/user-management/v1/user', async (req, reply) => {
    const client = await callingApp(req, reply);
    if (!client) return reply;
    const page = Number(param(req, 'page') ?? 1);
    if (!Number.isInteger(page) || page < 1 || page > 1_000_000)
      return sendApiError(reply, 'invalid_parameter', 'page must be a whole number from 1.');
    const users = await app.auth.listUsers(
      client.id,
      { appUserId: param(req, 'app_user_id'), oneupUserId: param(req, 'oneup_user_id') },
      (page - 1) * PAGE,
      PAGE,
    );
    return reply.send({ success: true, entry: users.map(entryOf), page, page_size: PAGE });
  });

  app.put('/user-management/v1/user', async (req, reply) => {
    const client = await callingApp(req, reply);
    if (!client) return reply;
    const oneupUserId = param(req, 'oneup_user_id');
    const newId = param(req, 'app_user_id');
    const username = param(req, 'username');
    const password = param(req, 'password');
    if (!oneupUserId || (!newId && !username))
      return sendApiError(reply, 'invalid_parameter', 'oneup_user_id and the new app_user_id (or a username and password) are required.');
    if (newId && !APP_USER_ID.test(newId)) return sendApiError(reply, 'invalid_parameter', 'app_user_id: 1 to 200 visible ASCII characters.');
    if (username && (!APP_USER_ID.test(username) || !password || password.length < 8 || password.length > 1000)) {
      return sendApiError(reply, 'invalid_parameter', 'A username (1 to 200 visible ASCII characters) needs a password of 8 to 1000 characters.');
    }
    let user = await app.auth.findUser(client.id, { oneupUserId });
    if (!user) return sendApiError(reply, 'no_such_user', 'no such user');
    if (newId) {
      const renamed = await app.auth.renameUser(client.id, user.id, newId);
      if (renamed === 'exists') return sendApiError(reply, 'app_user_id_taken', 'another user already has this app_user_id');
      user = renamed!;
    }
    // The SMART login page signs people in with these (the password is stored as a scrypt hash).
    if (username && !(await app.auth.setPassword(client.id, user.id, username, password!))) {
      return sendApiError(reply, 'username_taken', 'another user already has this username');
    }
    return reply.send({ success: true, ...entryOf(user) });
  });

  app.post('/user-management/v1/user/auth-code', async (req, reply) => {
    const client = await callingApp(req, reply);
    if (!client) return reply;
    const appUserId = param(req, 'app_user_id');
    const oneupUserId = param(req, 'oneup_user_id');
    if (!appUserId && !oneupUserId) return sendApiError(reply, 'invalid_parameter', 'app_user_id (or oneup_user_id) is required.');
    const user = await app.auth.findUser(client.id, { appUserId, oneupUserId });
    if (!user || !user.active) return sendApiError(reply, 'no_such_user', 'no such user; create it first with POST /user-management/v1/user');
    return reply.send(await codeFor(client, user));
  });

  // --- OAuth2 ------------------------------------------------------------------------------

  // Counted in this process's memory (@fastify/rate-limit's store): a flood guard, sized per
  // process. What guessing could win here is 256-bit secrets and codes; the guessable secrets,
  // passwords, are counted in PostgreSQL for every process (src/auth/signin-limit.ts).
  await app.register(rateLimit, { global: false });
  const limits = [
    app.createRateLimit({ max: app.config.tokenRateLimit, timeWindow: 60_000 }),
    app.createRateLimit({
      max: app.config.tokenRateLimit,
      timeWindow: 60_000,
      keyGenerator: (req) => `client:${claimedClientId(req) ?? ''}`,
      allowList: (_req, key) => key === 'client:',
    }),
  ];
  /** preHandler of the OAuth endpoints (the body is parsed by then: client_id may be in it). */
  async function limited(req: FastifyRequest, reply: FastifyReply) {
    for (const limit of limits) {
      const r = await limit(req);
      if (r.isAllowed || !r.isExceeded) continue;
      return reply
        .code(429)
        .header('Retry-After', String(Math.max(1, r.ttlInSeconds)))
        .header('Cache-Control', 'no-store')
        .send({
          error: 'slow_down',
          error_description: `More than ${r.max} requests a minute ${limit === limits[0] ? 'from this address' : 'for this client_id'}; retry after ${Math.max(1, r.ttlInSeconds)} s.`,
        });
    }
  }

  /** A public app names itself with client_id alone (no secret to send). */
  async function publicApp(req: FastifyRequest): Promise<App | undefined> {
    const clientId = param(req, 'client_id');
    if (!clientId || app.credentials.hasClient(req)) return undefined;
    const found = await app.auth.appByClientId(clientId);
    return found?.public ? found : undefined;
  }

  // A client assertion's aud (RFC 7523): this server's issuer identifier, or the endpoint it is sent to.
  // A simulated vendor's own token endpoint (plugins/vendor-sandbox.ts) forwards here, so an assertion for it is one for this server.
  const vendorTokenEndpoints = app.config.sandboxes
    ? app.config.sandboxSystems.filter((d) => d.vendor).map((d) => `/sandbox/${d.name}/oauth2/token`)
    : [];
  const tokenEndpoints = ['/oauth2/token', '/fhir/oauth2/token', '/oauth2/introspect', '/oauth2/revoke', '', ...vendorTokenEndpoints].map(
    (p) => `${app.config.baseUrl}${p}`,
  );

  /**
   * The client at the token endpoint, authenticated as it registered: a client assertion
   * (private_key_jwt, RFC 7523), its secret by HTTP Basic or as a parameter (either, unless the
   * app is bound to one), or nothing for a public app.
   */
  async function tokenClient(req: FastifyRequest): Promise<App> {
    const assertionType = param(req, 'client_assertion_type');
    if (assertionType !== undefined) return assertedClient(app.auth, assertionType, param(req, 'client_assertion'), tokenEndpoints);
    return secretClient((await app.credentials.app(req)) ?? (await publicApp(req)), app.credentials.secretVia(req));
  }

  async function token(req: FastifyRequest, reply: FastifyReply) {
    reply.header('Cache-Control', 'no-store').header('Pragma', 'no-cache');
    try {
      const client = await tokenClient(req);
      return reply.send(
        await grantTokens(
          app.auth,
          client,
          (n) => param(req, n),
          (g) => app.idTokenFor(client, g),
        ),
      );
    } catch (err) {
      if (err instanceof OAuthError) return oauthError(reply, err);
      throw err;
    }
  }
  app.post('/oauth2/token', { preHandler: limited }, token);
  app.post('/fhir/oauth2/token', { preHandler: limited }, token);

  /** Introspection and revocation: the client authenticates as at the token endpoint. */
  const withToken =
    (run: (client: App, token: string, reply: FastifyReply) => Promise<FastifyReply>) => async (req: FastifyRequest, reply: FastifyReply) => {
      try {
        const client = await tokenClient(req);
        const t = param(req, 'token');
        if (!t) throw new OAuthError('invalid_request', 'token is required.');
        return await run(client, t, reply);
      } catch (err) {
        if (err instanceof OAuthError) return oauthError(reply, err);
        throw err;
      }
    };
  app.post(
    '/oauth2/introspect',
    { preHandler: limited },
    withToken(async (client, t, reply) => reply.header('Cache-Control', 'no-store').send(await app.auth.introspect(client, t))),
  );
  app.post(
    '/oauth2/revoke',
    { preHandler: limited },
    withToken(async (client, t, reply) => {
      await app.auth.revoke(client, t);
      // RFC 7009: 200 whether or not the token was known.
      return reply.code(200).send({});
    }),
  );
}
