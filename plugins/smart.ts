/**
 * The SMART App Launch 2.2 authorization server, for third-party SMART apps (standalone launch):
 * - GET {fhir base}/.well-known/smart-configuration, GET /.well-known/openid-configuration, GET /oauth2/jwks
 * - GET or POST /oauth2/authorize: checks the request (registered redirect_uri, PKCE S256, `aud` =
 *   the FHIR base), then a person signs in (POST /oauth2/authorize/login) and approves the scopes
 *   (POST /oauth2/authorize/consent); the app gets a code at its redirect_uri.
 * The code is redeemed at /oauth2/token (plugins/users.ts) with its code_verifier; the answer
 * carries `patient` and, with `openid`, an RS256 id_token with `fhirUser`.
 * See: https://build.fhir.org/ig/HL7/smart-app-launch/app-launch.html
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { checkAuthorize } from '../src/auth/authorize.ts';
import { AUTHZ_REQUEST_FAILURES, type App, type AuthzRequest } from '../src/auth/store.ts';
import { waitWords, type Lock } from '../src/auth/signin-limit.ts';
import { approvedCode, signIn } from '../src/auth/sign-in.ts';
import { openidConfiguration, smartConfiguration } from '../src/auth/smart-configuration.ts';
import { addFormParser, requestParam as param } from './auth.ts';
import { escapeHtml as esc } from '../src/html.ts';
import { fromThisMachine, sandboxesLocalOnly } from './loopback.ts';
import { connectReturnUri } from '../src/connect/return-uri.ts';

export { smartConfiguration } from '../src/auth/smart-configuration.ts';

const FHIR_BASES = ['/fhir/r4', '/r4'];

/**
 * The Content-Security-Policy of the sign-in pages: no script, nothing from elsewhere, no framing;
 * forms post here ('self') and, after them, the redirects may go on to `formTargets` only. Chromium
 * applies form-action to every redirect that follows a form post, so the consent form's answer (a
 * 302 to the app's redirect_uri) needs the app's origin named here.
 * See: https://www.w3.org/TR/CSP3/#directive-form-action
 */
export function signInPolicy(formTargets: readonly string[] = []): string {
  return `default-src 'none'; style-src 'unsafe-inline'; form-action ${["'self'", ...formTargets].join(' ')}; frame-ancestors 'none'`;
}

/**
 * The CSP source that lets a form's redirect reach a redirect URI: its origin (http, https), or its
 * scheme (a native app's private-use scheme, `com.example.app:`); undefined when it has neither.
 */
export function formActionSource(uri: string): string | undefined {
  if (!URL.canParse(uri)) return undefined;
  const u = new URL(uri);
  if (u.protocol === 'http:' || u.protocol === 'https:') return /^https?:\/\/[A-Za-z0-9.-]+(:\d+)?$/.test(u.origin) ? u.origin : undefined;
  return /^[a-z][a-z0-9+.-]*:$/.test(u.protocol) ? u.protocol : undefined;
}

/** A small HTML page; no script, nothing from elsewhere (Content-Security-Policy says so). */
function htmlPage(reply: FastifyReply, status: number, title: string, body: string, formTargets: readonly string[]): FastifyReply {
  return reply
    .code(status)
    .header('Content-Type', 'text/html; charset=utf-8')
    .header('Content-Security-Policy', signInPolicy(formTargets))
    .header('Cache-Control', 'no-store')
    .header('X-Frame-Options', 'DENY')
    .send(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${esc(title)}</title>
<style>body{font:16px system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}label,input,button{display:block;width:100%;margin:.4rem 0}input,button{padding:.5rem;font-size:1rem}li{margin:.2rem 0}.error{color:#a00}</style>
</head><body><h1>${esc(title)}</h1>${body}</body></html>`);
}

/** Where the app hears the outcome: its redirect_uri with the query parameters added. */
function redirectTo(reply: FastifyReply, uri: string, params: Record<string, string>): FastifyReply {
  const u = new URL(uri);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return reply.code(302).header('Location', u.toString()).header('Cache-Control', 'no-store').send();
}

export default async function smartRoutes(app: FastifyInstance) {
  addFormParser(app);
  const issuer = app.config.baseUrl;
  const fhirBases = FHIR_BASES.map((b) => `${app.config.baseUrl}${b}`);

  // Where the forms of a request's pages may be redirected on to (see signInPolicy), set once the
  // request is known; every page of this plugin reads it, so a page sent before says 'self' only.
  const formTargets = new WeakMap<FastifyReply, string[]>();
  const page = (reply: FastifyReply, status: number, title: string, body: string) =>
    htmlPage(reply, status, title, body, formTargets.get(reply) ?? []);
  /**
   * The app's redirect_uri; for a hosted system (a sandbox), whose redirect_uri is Tributary's own
   * /connect/callback, also where that callback sends the person on to (the connecting app).
   */
  async function allowFormTargets(reply: FastifyReply, client: App, r: { redirectUri: string; state: string }) {
    const uris = [r.redirectUri];
    if (app.hostedSystems.has(client.id)) {
      const next = await connectReturnUri(app.pg, r.state);
      if (next) uris.push(next);
    }
    formTargets.set(reply, [...new Set(uris.map(formActionSource).filter((s) => s !== undefined))]);
  }

  const configuration = () => smartConfiguration(issuer);
  for (const b of FHIR_BASES) app.get(`${b}/.well-known/smart-configuration`, async () => configuration());
  app.get('/.well-known/openid-configuration', async () => openidConfiguration(issuer));
  app.get('/oauth2/jwks', async () => app.signingKeys.jwks());

  // --- authorize ---------------------------------------------------------------------------

  async function authorize(req: FastifyRequest, reply: FastifyReply) {
    const p = (n: string) => param(req, n);
    const clientId = p('client_id');
    const client = clientId ? await app.auth.appByClientId(clientId) : undefined;
    const redirectUri = p('redirect_uri');
    // Until the app and its redirect_uri are known good, errors are shown here, never redirected.
    if (!client) return page(reply, 400, 'Unknown app', '<p class="error">The client_id is missing or names no app of this server.</p>');
    // A sandbox's sign-in, like its FHIR base, from this machine only unless SANDBOXES_PUBLIC.
    if (app.hostedSystems.has(client.id) && !app.config.sandboxesPublic && !fromThisMachine(req))
      return page(reply, 403, 'Sandbox system', `<p class="error">${esc(sandboxesLocalOnly)}</p>`);
    if (!redirectUri || !client.redirectUris.includes(redirectUri)) {
      return page(reply, 400, 'Wrong redirect address', '<p class="error">The redirect_uri is missing or is not one the app registered.</p>');
    }
    const state = p('state') ?? '';
    const fail = (error: string, description: string) =>
      redirectTo(reply, redirectUri, { error, error_description: description, ...(state ? { state } : {}) });
    // A hosted system's app (a sandbox) grants access to that system's FHIR base only.
    const hosted = app.hostedSystems.get(client.id);
    const checked = checkAuthorize(p, client, redirectUri, hosted ? [hosted.fhirBase] : fhirBases);
    if ('error' in checked) return fail(checked.error, checked.description);
    const id = await app.auth.newAuthzRequest(checked.request);
    await allowFormTargets(reply, client, { redirectUri, state });
    return loginPage(reply, client, id, '');
  }
  app.get('/oauth2/authorize', authorize);
  app.post('/oauth2/authorize', authorize);

  /** A hosted system (a sandbox) signs its own patients in, for Tributary; any other app is the one asking. */
  const asking = (client: App) => (app.hostedSystems.has(client.id) ? 'Tributary' : client.name);
  const signInTitle = (client: App) => {
    const hosted = app.hostedSystems.get(client.id);
    return hosted ? `Sign in to ${hosted.title}` : `Sign in to share your records with ${client.name}`;
  };

  /** What a lock means for the person, in one sentence: what is locked and how long to wait. */
  const lockWords = (lock: Lock) =>
    `Too many wrong passwords ${lock.by === 'username' ? 'for this username' : 'from your network'}: wait ${waitWords(lock.seconds)}, then try again.`;

  /** The sign-in form again, saying how long to wait (429, Retry-After). */
  function lockedPage(reply: FastifyReply, client: App, id: string, lock: Lock) {
    reply.header('Retry-After', String(lock.seconds));
    return loginPage(reply, client, id, lockWords(lock), 429);
  }

  function loginPage(reply: FastifyReply, client: App, id: string, error: string, status = error ? 401 : 200) {
    return page(
      reply,
      status,
      signInTitle(client),
      `${error ? `<p class="error">${esc(error)}</p>` : ''}<form method="post" action="/oauth2/authorize/login">
<input type="hidden" name="request" value="${esc(id)}">
<label>Username <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form>`,
    );
  }

  /** The pending request of a form post, with its app; undefined when unknown or expired (a page is sent). */
  async function pending(req: FastifyRequest, reply: FastifyReply): Promise<{ id: string; r: AuthzRequest; client: App } | undefined> {
    const id = param(req, 'request');
    const r = id && /^[0-9a-f]{64}$/.test(id) ? await app.auth.authzRequest(id) : undefined;
    const client = r && (await app.auth.appById(r.appId));
    if (!id || !r || !client) {
      page(reply, 400, 'This sign-in has expired', '<p class="error">Go back to the app and start again.</p>');
      return undefined;
    }
    await allowFormTargets(reply, client, r);
    return { id, r, client };
  }

  app.post('/oauth2/authorize/login', async (req, reply) => {
    const found = await pending(req, reply);
    if (!found) return reply;
    const username = param(req, 'username') ?? '';
    const password = param(req, 'password') ?? '';
    // Wrong passwords are limited per username and per address (in PostgreSQL, for every process);
    // a locked sign-in is refused before the password is even checked.
    // A sandbox still writing its test patients has no passwords yet: say so, and count nothing.
    if (app.hostedSystems.get(found.client.id)?.loading) {
      reply.header('Retry-After', '5');
      return loginPage(
        reply,
        found.client,
        found.id,
        'This sandbox system is still loading its test patients (a few seconds after the server starts): try again in a moment.',
        503,
      );
    }
    const keys = { appId: found.client.id, username, address: req.ip };
    const result = await signIn({ auth: app.auth, limit: app.signinLimit }, found.id, keys, password);
    if (result.outcome === 'locked') return lockedPage(reply, found.client, found.id, result.lock);
    if (result.outcome === 'ended') {
      const lock = result.lock;
      if (lock) reply.header('Retry-After', String(lock.seconds));
      const wait = lock ? ` ${lockWords(lock)}` : '';
      return page(
        reply,
        400,
        'This sign-in has ended',
        `<p class="error">The username or password was wrong ${AUTHZ_REQUEST_FAILURES} times.${esc(wait)} Go back to the app and start again.</p>`,
      );
    }
    if (result.outcome === 'wrong') {
      if (result.lock) return lockedPage(reply, found.client, found.id, result.lock);
      return loginPage(reply, found.client, found.id, 'The username or password is wrong.');
    }
    const items = found.r.scope
      .split(' ')
      .map((s) => `<li><code>${esc(s)}</code></li>`)
      .join('');
    return page(
      reply,
      200,
      `Share your records with ${asking(found.client)}?`,
      `<p>${esc(asking(found.client))} asks for:</p><ul>${items}</ul>
<form method="post" action="/oauth2/authorize/consent"><input type="hidden" name="request" value="${esc(found.id)}">
<button type="submit" name="decision" value="approve">Allow</button><button type="submit" name="decision" value="deny">Deny</button></form>`,
    );
  });

  app.post('/oauth2/authorize/consent', async (req, reply) => {
    const found = await pending(req, reply);
    if (!found) return reply;
    const { id, r, client } = found;
    if (!r.userId) return page(reply, 400, 'Sign in first', '<p class="error">Go back to the app and start again.</p>');
    // Each request is answered once, whatever the answer.
    if (!(await app.auth.endAuthzRequest(id)))
      return page(reply, 400, 'This sign-in has expired', '<p class="error">Go back to the app and start again.</p>');
    if (param(req, 'decision') !== 'approve')
      return redirectTo(reply, r.redirectUri, { error: 'access_denied', error_description: 'The person declined.', state: r.state });
    const code = await approvedCode(app.auth, client, { ...r, userId: r.userId });
    return redirectTo(reply, r.redirectUri, { code, state: r.state });
  });
}
