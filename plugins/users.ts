/**
 * 1upHealth's user-management API and the OAuth2 token endpoints, with their paths and shapes:
 * - POST/GET/PUT /user-management/v1/user, POST /user-management/v1/user/auth-code
 * - POST /oauth2/token (also /fhir/oauth2/token), parameters in a form body or the query string
 * - POST /oauth2/introspect (RFC 7662), POST /oauth2/revoke (RFC 7009)
 * The four OAuth endpoints take TOKEN_RATE_LIMIT requests a minute per client address and per
 * client_id (then 429 slow_down with Retry-After).
 * See: https://1up.health/dev/reference/user-management, RFC 6749 section 5.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import { OAuthError, type App, type User } from '../src/auth/store.ts';
import { addFormParser, claimedClientId, requestParam as param } from './auth.ts';

const APP_USER_ID = /^[\x21-\x7e]{1,200}$/;
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
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
      reply.code(401).send({ success: false, error: 'client_id and client_secret are missing or wrong; pass them as query parameters, form fields or headers.' });
      return undefined;
    }
    const rate = await app.auth.countCall(client.id, app.config.userApiRateLimit);
    if (!rate.ok) {
      reply.code(429).header('Retry-After', String(rate.retryAfter)).send({ success: false, error: `more than ${app.config.userApiRateLimit} user-management calls this hour; retry after ${rate.retryAfter} s` });
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
    if (!appUserId || !APP_USER_ID.test(appUserId)) return reply.code(400).send({ success: false, error: 'app_user_id is required: 1 to 200 visible ASCII characters.' });
    const user = await app.auth.createUser(client.id, appUserId);
    if (!user) return reply.code(200).send({ error: 'this user already exists' });
    return reply.send(await codeFor(client, user));
  });

  app.get('/user-management/v1/user', async (req, reply) => {
    const client = await callingApp(req, reply);
    if (!client) return reply;
    const page = Number(param(req, 'page') ?? 1);
    if (!Number.isInteger(page) || page < 1 || page > 1_000_000) return reply.code(400).send({ success: false, error: 'page must be a whole number from 1.' });
    const users = await app.auth.listUsers(client.id, { appUserId: param(req, 'app_user_id'), oneupUserId: param(req, 'oneup_user_id') }, (page - 1) * PAGE, PAGE);
    return reply.send({ success: true, entry: users.map(entryOf), page, page_size: PAGE });
  });

  app.put('/user-management/v1/user', async (req, reply) => {
    const client = await callingApp(req, reply);
    if (!client) return reply;
    const oneupUserId = param(req, 'oneup_user_id');
    const newId = param(req, 'app_user_id');
    const username = param(req, 'username');
    const password = param(req, 'password');
    if (!oneupUserId || (!newId && !username)) return reply.code(400).send({ success: false, error: 'oneup_user_id and the new app_user_id (or a username and password) are required.' });
    if (newId && !APP_USER_ID.test(newId)) return reply.code(400).send({ success: false, error: 'app_user_id: 1 to 200 visible ASCII characters.' });
    if (username && (!APP_USER_ID.test(username) || !password || password.length < 8 || password.length > 1000)) {
      return reply.code(400).send({ success: false, error: 'A username (1 to 200 visible ASCII characters) needs a password of 8 to 1000 characters.' });
    }
    let user = await app.auth.findUser(client.id, { oneupUserId });
    if (!user) return reply.code(404).send({ success: false, error: 'no such user' });
    if (newId) {
      const renamed = await app.auth.renameUser(client.id, user.id, newId);
      if (renamed === 'exists') return reply.code(409).send({ success: false, error: 'another user already has this app_user_id' });
      user = renamed!;
    }
    // The SMART login page signs people in with these (the password is stored as a scrypt hash).
    if (username && !(await app.auth.setPassword(client.id, user.id, username, password!))) {
      return reply.code(409).send({ success: false, error: 'another user already has this username' });
    }
    return reply.send({ success: true, ...entryOf(user) });
  });

  app.post('/user-management/v1/user/auth-code', async (req, reply) => {
    const client = await callingApp(req, reply);
    if (!client) return reply;
    const appUserId = param(req, 'app_user_id');
    const oneupUserId = param(req, 'oneup_user_id');
    if (!appUserId && !oneupUserId) return reply.code(400).send({ success: false, error: 'app_user_id (or oneup_user_id) is required.' });
    const user = await app.auth.findUser(client.id, { appUserId, oneupUserId });
    if (!user || !user.active) return reply.code(404).send({ success: false, error: 'no such user; create it first with POST /user-management/v1/user' });
    return reply.send(await codeFor(client, user));
  });

  // --- OAuth2 ------------------------------------------------------------------------------

  // Counted in this process's memory (@fastify/rate-limit's store): a flood guard, sized per
  // process. What guessing could win here is 256-bit secrets and codes; the guessable secrets,
  // passwords, are counted in PostgreSQL for every process (src/auth/signin-limit.ts).
  await app.register(rateLimit, { global: false });
  const limits = [
    app.createRateLimit({ max: app.config.tokenRateLimit, timeWindow: 60_000 }),
    app.createRateLimit({ max: app.config.tokenRateLimit, timeWindow: 60_000, keyGenerator: (req) => `client:${claimedClientId(req) ?? ''}`, allowList: (_req, key) => key === 'client:' }),
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
        .send({ error: 'slow_down', error_description: `More than ${r.max} requests a minute ${limit === limits[0] ? 'from this address' : 'for this client_id'}; retry after ${Math.max(1, r.ttlInSeconds)} s.` });
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
  const vendorTokenEndpoints = app.config.sandboxes ? app.config.sandboxSystems.filter((d) => d.vendor).map((d) => `/sandbox/${d.name}/oauth2/token`) : [];
  const tokenEndpoints = ['/oauth2/token', '/fhir/oauth2/token', '/oauth2/introspect', '/oauth2/revoke', '', ...vendorTokenEndpoints].map((p) => `${app.config.baseUrl}${p}`);

  /**
   * The client at the token endpoint, authenticated as it registered: a client assertion
   * (private_key_jwt, RFC 7523), its secret by HTTP Basic or as a parameter (either, unless the
   * app is bound to one), or nothing for a public app.
   */
  async function tokenClient(req: FastifyRequest): Promise<App> {
    const assertionType = param(req, 'client_assertion_type');
    if (assertionType !== undefined) {
      const assertion = param(req, 'client_assertion');
      if (assertionType !== JWT_BEARER || !assertion) throw new OAuthError('invalid_client', `A client assertion needs client_assertion_type=${JWT_BEARER} and client_assertion.`, 401);
      const client = await app.auth.authenticateAssertion(assertion, tokenEndpoints);
      if (!client) throw new OAuthError('invalid_client', `The client assertion is not valid: signed by a registered key, iss and sub the client_id, aud ${tokenEndpoints[0]}, unexpired, with a jti never used before.`, 401);
      return client;
    }
    const client = (await app.credentials.app(req)) ?? (await publicApp(req));
    if (!client) throw new OAuthError('invalid_client', 'client_id and client_secret are missing or wrong.', 401);
    const via = app.credentials.secretVia(req);
    const wanted = client.tokenAuthMethod;
    if (wanted === 'private_key_jwt') throw new OAuthError('invalid_client', 'This app authenticates with a client assertion (private_key_jwt), not a secret.', 401);
    if (wanted === 'client_secret_basic' && via !== 'basic') throw new OAuthError('invalid_client', 'This app sends its secret with HTTP Basic (client_secret_basic).', 401);
    if (wanted === 'client_secret_post' && via !== 'post') throw new OAuthError('invalid_client', 'This app sends its secret as the client_secret parameter (client_secret_post).', 401);
    return client;
  }

  async function token(req: FastifyRequest, reply: FastifyReply) {
    reply.header('Cache-Control', 'no-store').header('Pragma', 'no-cache');
    try {
      const client = await tokenClient(req);
      const grant = param(req, 'grant_type');
      if (grant === 'authorization_code') {
        const code = param(req, 'code');
        if (!code) throw new OAuthError('invalid_request', 'code is required.');
        const proof = { redirectUri: param(req, 'redirect_uri'), codeVerifier: param(req, 'code_verifier') };
        return reply.send(await app.auth.exchangeCode(client, code, proof, (g) => app.idTokenFor(client, g)));
      }
      if (client.public && grant !== 'refresh_token') throw new OAuthError('unauthorized_client', 'A public app may use authorization_code and refresh_token only.');
      if (grant === 'refresh_token') {
        const refresh = param(req, 'refresh_token');
        if (!refresh) throw new OAuthError('invalid_request', 'refresh_token is required.');
        return reply.send(await app.auth.refresh(client, refresh));
      }
      if (grant === 'client_credentials') return reply.send(await app.auth.clientToken(client));
      throw new OAuthError(grant ? 'unsupported_grant_type' : 'invalid_request', grant ? `grant_type ${grant.slice(0, 50)} is not supported; use authorization_code, refresh_token or client_credentials.` : 'grant_type is required.');
    } catch (err) {
      if (err instanceof OAuthError) return oauthError(reply, err);
      throw err;
    }
  }
  app.post('/oauth2/token', { preHandler: limited }, token);
  app.post('/fhir/oauth2/token', { preHandler: limited }, token);

  /** Introspection and revocation: the client authenticates as at the token endpoint. */
  const withToken = (run: (client: App, token: string, reply: FastifyReply) => Promise<FastifyReply>) => async (req: FastifyRequest, reply: FastifyReply) => {
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
  app.post('/oauth2/introspect', { preHandler: limited }, withToken(async (client, t, reply) => reply.header('Cache-Control', 'no-store').send(await app.auth.introspect(client, t))));
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
