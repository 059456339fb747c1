/**
 * The admin API: apps, as the CLI manages them, behind `Authorization: Bearer <ADMIN_KEY>`.
 * Without ADMIN_KEY in the configuration it answers 404 (there is no admin API).
 *   GET /admin/apps · GET /admin/apps/:clientId
 *   POST /admin/apps {name, redirect_uris?, scopes?, public?, token_endpoint_auth_method?, jwks?}
 *   PUT /admin/apps/:clientId/jwks (the body: a JWK Set; replaces the app's keys at once)
 *   POST /admin/apps/:clientId/rotate-secret · DELETE /admin/apps/:clientId
 */
import { sendApiError } from '../src/errors/http.ts';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sameHash, sha256 } from '../src/auth/secrets.ts';
import { describeApp, redirectUriProblem } from '../src/auth/store.ts';
import { setJwks } from '../src/auth/apps.ts';
import { checkJwks, clientAuthentication } from '../src/auth/jwks.ts';

const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string' && x.length <= 2000);

/** The onRequest hook of every admin route: 404 without ADMIN_KEY, 401 without the key. */
export function adminOnly(app: FastifyInstance) {
  const key = app.config.adminKey ? sha256(app.config.adminKey) : undefined;
  return async (req: FastifyRequest, reply: FastifyReply) => {
    if (!key) return sendApiError(reply, 'admin_disabled', 'There is no admin API: set ADMIN_KEY to enable it.', false);
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (!m || !sameHash(sha256(m[1]), key))
      return sendApiError(reply.header('WWW-Authenticate', 'Bearer'), 'admin_unauthorized', 'Send Authorization: Bearer <ADMIN_KEY>.', false);
  };
}

const KEYS_NOT_SECRET = 'This app authenticates with private_key_jwt, not a secret; replace its keys with PUT /admin/apps/:clientId/jwks instead.';

const noSuchApp = (reply: FastifyReply, clientId: string) =>
  sendApiError(reply, 'no_such_app', `No app has client_id ${clientId.slice(0, 64)}; GET /admin/apps lists them.`, false);

export default async function adminRoutes(app: FastifyInstance) {
  app.addHook('onRequest', adminOnly(app));
  app.get('/apps', async () => (await app.auth.listApps()).map(describeApp));
  app.get('/apps/:clientId', async (req, reply) => {
    const { clientId } = req.params as { clientId: string };
    const found = await app.auth.appByClientId(clientId);
    return found ? describeApp(found) : noSuchApp(reply, clientId);
  });
  app.post('/apps', async (req, reply) => {
    const b = (req.body ?? {}) as {
      name?: unknown;
      redirect_uris?: unknown;
      scopes?: unknown;
      public?: unknown;
      token_endpoint_auth_method?: unknown;
      jwks?: unknown;
    };
    if (typeof b.name !== 'string' || !b.name.trim() || b.name.length > 200)
      return sendApiError(reply, 'invalid_parameter', 'name is required (1 to 200 characters).', false);
    if (b.redirect_uris !== undefined && !strings(b.redirect_uris))
      return sendApiError(reply, 'invalid_parameter', 'redirect_uris must be a list of http(s) URLs.', false);
    const problem = redirectUriProblem(b.redirect_uris ?? []);
    if (problem) return sendApiError(reply, 'invalid_parameter', problem, false);
    if (b.scopes !== undefined && !strings(b.scopes)) return sendApiError(reply, 'invalid_parameter', 'scopes must be a list of strings.', false);
    if (b.public !== undefined && typeof b.public !== 'boolean')
      return sendApiError(reply, 'invalid_parameter', 'public must be true or false.', false);
    const auth = clientAuthentication(
      { public: b.public === true, method: b.token_endpoint_auth_method, jwks: b.jwks },
      { method: 'token_endpoint_auth_method', jwks: 'jwks' },
    );
    if ('problem' in auth) return sendApiError(reply, 'invalid_parameter', auth.problem, false);
    const { app: created, clientSecret } = await app.auth.createApp({
      name: b.name.trim(),
      redirectUris: b.redirect_uris as string[] | undefined,
      scopes: b.scopes as string[] | undefined,
      public: b.public === true,
      tokenAuthMethod: auth.method,
      jwks: auth.jwks,
    });
    // A public app, or one of keys (private_key_jwt), has no secret to show.
    return reply.code(201).send({ ...describeApp(created), ...(clientSecret ? { client_secret: clientSecret } : {}) });
  });
  // Key rotation: the new set replaces the old one at once (a client adds its new key to the set
  // it sends here, moves its signing to it, then sends the set without the old one).
  app.put('/apps/:clientId/jwks', async (req, reply) => {
    const { clientId } = req.params as { clientId: string };
    const found = await app.auth.appByClientId(clientId);
    if (!found) return noSuchApp(reply, clientId);
    if (found.public)
      return sendApiError(
        reply,
        'invalid_parameter',
        'A public app has no client authentication, so no JWK Set; make a confidential app for keys.',
        false,
      );
    const checked = checkJwks(req.body);
    if ('problem' in checked) return sendApiError(reply, 'invalid_parameter', checked.problem, false);
    const updated = await setJwks(app.pg, clientId, checked.jwks);
    return updated ? describeApp(updated) : noSuchApp(reply, clientId);
  });
  app.post('/apps/:clientId/rotate-secret', async (req, reply) => {
    const { clientId } = req.params as { clientId: string };
    if ((await app.auth.appByClientId(clientId))?.tokenAuthMethod === 'private_key_jwt')
      return sendApiError(reply, 'invalid_parameter', KEYS_NOT_SECRET, false);
    const secret = await app.auth.rotateSecret(clientId);
    return secret ? { client_id: clientId, client_secret: secret } : noSuchApp(reply, clientId);
  });
  app.delete('/apps/:clientId', async (req, reply) => {
    const { clientId } = req.params as { clientId: string };
    return (await app.auth.deleteApp(clientId)) ? reply.code(204).send() : noSuchApp(reply, clientId);
  });
}
