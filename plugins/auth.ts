/**
 * Who is asking: the app (client_id + client_secret, given the ways 1upHealth accepts them) or a
 * bearer token, resolved to an Access (app, and user or the whole app). Routes call
 * `app.credentials` and decide what to do without them.
 */
import fp from 'fastify-plugin';
import { EXPIRE_CRON, EXPIRE_QUEUE } from '../src/jobs/queues.ts';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { NO_KEY_FOR_SIGNING, sealStoredKeys, SigningKeys } from '../src/auth/keys.ts';
import { vaultFor, type Vault } from '../src/auth/vault.ts';
import { SigninLimit } from '../src/auth/signin-limit.ts';
import { expire } from '../src/auth/expire.ts';
import { AuthStore, type Access, type App, type Granted } from '../src/auth/store.ts';
import { clientAccess } from '../src/auth/client-access.ts';
import { idTokenFor } from '../src/auth/id-token.ts';

declare module 'fastify' {
  interface FastifyInstance {
    auth: AuthStore;
    /** Failed SMART sign-ins per username and per address, shared by every process (see src/auth/signin-limit.ts). */
    signinLimit: SigninLimit;
    credentials: Credentials;
    signingKeys: SigningKeys;
    /** The OpenID Connect id_token of a grant (when `openid` was granted), for the token endpoint. */
    idTokenFor(app: App, g: Granted): Promise<string | undefined>;
    /** The key Tributary signs client assertions with at health systems (private_key_jwt). */
    clientKeys: SigningKeys;
    /** Holds values sealed with the configured key (a health system's tokens, client secrets). */
    vault: Vault;
    /**
     * Apps that are health systems hosted here (the sandboxes), by app id: their tokens are for their
     * own FHIR base, and their sign-in pages carry their name.
     */
    hostedSystems: Map<number, HostedSystem>;
  }
}

export interface HostedSystem {
  /** The absolute FHIR base URL. */
  fhirBase: string;
  title: string;
  /** Its test patients are still being written (their passwords are set last): a sign-in now is not a wrong password. */
  loading?: boolean;
}

type Fields = Record<string, unknown>;

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** Form bodies (application/x-www-form-urlencoded) as an object, for the OAuth and user routes. */
export function addFormParser(app: FastifyInstance): void {
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
}

/** A non-empty parameter from the query string or the (form or JSON) body. */
export function requestParam(req: FastifyRequest, name: string): string | undefined {
  const body =
    req.body && typeof req.body === 'object' && !Buffer.isBuffer(req.body) && !(req.body instanceof URLSearchParams) ? (req.body as Fields) : {};
  return str((req.query as Fields | undefined)?.[name]) ?? str(body[name]);
}

export interface Credentials {
  /** The app whose client_id and client_secret the request carries (query, form body, headers or HTTP Basic). */
  app(req: FastifyRequest): Promise<App | undefined>;
  /** Whether the request carries client credentials at all (right or wrong). */
  hasClient(req: FastifyRequest): boolean;
  /** How the request carries a client secret: HTTP Basic, parameters or headers; undefined: it does not. */
  secretVia(req: FastifyRequest): 'basic' | 'post' | 'headers' | undefined;
  /** The bearer token of the Authorization header, if any. */
  bearer(req: FastifyRequest): string | undefined;
  /**
   * FHIR access: a bearer token, or client credentials with `x-oneup-user-id` (a user of the app,
   * or `client` for all of them). 'invalid': credentials given but wrong; undefined: none given.
   */
  fhirAccess(req: FastifyRequest): Promise<Access | 'invalid' | undefined>;
}

type Pair = { id: string; secret: string; via: 'basic' | 'post' | 'headers' };

/** Longest Authorization: Basic value read (an id and a secret of 200 characters each, encoded). */
const BASIC_MAX = 2048;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The client_id and secret of an `Authorization: Basic` value: base64 of
 * urlencode(id) ":" urlencode(secret), both non-empty. Null when the value is not that shape (not
 * base64, no colon, an empty part, bad percent-encoding, oversized): credentials were given, and
 * they are wrong.
 * See: https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1, https://www.rfc-editor.org/rfc/rfc7617#section-2
 */
export function parseBasic(value: string): { id: string; secret: string } | null {
  const encoded = value.trim();
  if (encoded.length > BASIC_MAX || !BASE64.test(encoded)) return null;
  let decoded: string;
  try {
    decoded = utf8.decode(Buffer.from(encoded, 'base64'));
  } catch {
    return null;
  }
  const i = decoded.indexOf(':');
  if (i <= 0 || i === decoded.length - 1) return null;
  try {
    return { id: decodeURIComponent(decoded.slice(0, i)), secret: decodeURIComponent(decoded.slice(i + 1)) };
  } catch {
    return null;
  }
}

/**
 * The client_id and secret a request carries, and how: HTTP Basic, parameters (form or query), or
 * 1upHealth's headers. A malformed Basic header is a pair that matches no app (id ''), never a throw.
 */
function clientPair(req: FastifyRequest): Pair | undefined {
  const h = req.headers;
  const auth = h.authorization;
  if (typeof auth === 'string' && /^basic(\s|$)/i.test(auth)) {
    const parsed = parseBasic(auth.slice(5));
    return parsed ? { ...parsed, via: 'basic' } : { id: '', secret: '', via: 'basic' };
  }
  const id = requestParam(req, 'client_id') ?? str(h.client_id) ?? str(h['x-client-id']);
  const secret = requestParam(req, 'client_secret');
  if (id && secret) return { id, secret, via: 'post' };
  const header = str(h.client_secret) ?? str(h['x-client-secret']);
  return id && header ? { id, secret: header, via: 'headers' } : undefined;
}

/** The client_id a request names (with or without a secret), for counting its requests; undefined: none. */
export function claimedClientId(req: FastifyRequest): string | undefined {
  const id = clientPair(req)?.id || requestParam(req, 'client_id');
  return id ? id.slice(0, 200) : undefined;
}

export default fp(
  async function auth(app: FastifyInstance) {
    const store = new AuthStore(app.pg);
    app.decorate('auth', store);
    app.decorate('signinLimit', new SigninLimit(app.pg, app.config.signinAddressFailures));
    const stopListening = await store.listen();
    app.addHook('onClose', stopListening);
    // Every hour, one process removes expired codes, tokens and sign-in requests.
    await app.jobs.schedule(EXPIRE_QUEUE, EXPIRE_CRON);
    await app.jobs.work(EXPIRE_QUEUE, async ([job]) => {
      app.log.info({ removed: await expire(job, { pool: app.pg }) }, 'expired codes and tokens removed');
    });
    const credentials: Credentials = {
      async app(req) {
        const pair = clientPair(req);
        if (!pair || !pair.id || pair.id.length > 200 || pair.secret.length > 200) return undefined;
        return store.authenticateApp(pair.id, pair.secret);
      },
      hasClient: (req) => clientPair(req) !== undefined,
      secretVia: (req) => clientPair(req)?.via,
      bearer(req) {
        const m = /^Bearer\s+([A-Za-z0-9._~+/=-]{1,512})\s*$/i.exec(req.headers.authorization ?? '');
        return m?.[1];
      },
      async fhirAccess(req) {
        const token = credentials.bearer(req);
        if (token) return (await store.accessFor(token)) ?? 'invalid';
        if (!credentials.hasClient(req)) return undefined;
        const client = await credentials.app(req);
        if (!client) return 'invalid';
        return clientAccess(store, client, str(req.headers['x-oneup-user-id']));
      },
    };
    app.decorate('credentials', credentials);

    app.decorate('vault', vaultFor(app.config));
    // Private keys stored in the clear before they were sealed: sealed now, once.
    if (app.vault.ready) await sealStoredKeys(app.pg, app.vault);
    else app.log.warn(NO_KEY_FOR_SIGNING);
    app.decorate('hostedSystems', new Map<number, HostedSystem>());
    app.decorate('clientKeys', new SigningKeys(app.pg, app.vault, 'client_assertion'));

    const keys = new SigningKeys(app.pg, app.vault);
    app.decorate('signingKeys', keys);
    app.decorate('idTokenFor', async (client: App, g: Granted) => {
      // A hosted system's tokens (a sandbox's) are for its own FHIR base.
      const fhirBase = app.hostedSystems.get(client.id)?.fhirBase ?? `${app.config.baseUrl}/fhir/r4`;
      return idTokenFor({ keys, vault: app.vault, issuer: app.config.baseUrl, fhirBase }, client, g);
    });
  },
  { name: 'auth', dependencies: ['db', 'jobs'] },
);
