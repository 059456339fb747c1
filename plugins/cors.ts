/**
 * CORS for the routes a SMART app in a browser calls from its own origin (a standalone launch with
 * fhirclient, say): the SMART and OpenID configurations and the JWKS, the FHIR API, and the token
 * and revocation endpoints. Nothing else answers another origin (the user-management and connect
 * APIs take an app's secret or serve pages: they are for the app's back end and the person).
 *
 * Why this is safe without an allow-list for most of it: no route here reads a cookie. The FHIR API
 * takes its credentials in the Authorization header only, which a page on another origin can send
 * only with a token it already holds; so `Access-Control-Allow-Origin` is the request's origin and
 * never `Access-Control-Allow-Credentials`. The token and revocation endpoints answer only the
 * origins of redirect URIs some app registered (where a SMART app in a browser lives).
 * See: https://build.fhir.org/ig/HL7/smart-app-launch/app-launch.html#considerations-for-cross-origin-resource-sharing-cors-support
 * See: https://fetch.spec.whatwg.org/#http-cors-protocol
 */
import { isRegisteredOrigin } from '../src/auth/registered-origin.ts';
import fp from 'fastify-plugin';
import fastifyCors, { type FastifyCorsOptions } from '@fastify/cors';
import type { FastifyInstance, FastifyRequest } from 'fastify';

const FHIR_BASES = ['/fhir/r4', '/r4'];
const METADATA = new Set(['/.well-known/openid-configuration', '/.well-known/smart-configuration', '/oauth2/jwks']);
const TOKEN_ENDPOINTS = new Set(['/oauth2/token', '/fhir/oauth2/token', '/oauth2/revoke']);

/** What a script on another origin may read of a FHIR answer, beyond the CORS-safelisted headers. */
export const EXPOSED_HEADERS = ['Location', 'ETag', 'Content-Location', 'Last-Modified'];
/** The request headers a FHIR client sends (Authorization and Content-Type make a preflight). */
export const FHIR_REQUEST_HEADERS = [
  'Authorization',
  'Content-Type',
  'Accept',
  'If-Match',
  'If-None-Match',
  'If-None-Exist',
  'If-Modified-Since',
  'Prefer',
];

const PREFLIGHT_SECONDS = 600;

type Kind = 'public' | 'registered' | undefined;

/** Which CORS a path gets: any origin (metadata, the bearer-token FHIR API), registered origins (token endpoints), or none. */
export function corsKind(path: string): Kind {
  if (METADATA.has(path) || FHIR_BASES.some((b) => path === b || path.startsWith(`${b}/`))) return 'public';
  if (TOKEN_ENDPOINTS.has(path)) return 'registered';
  return undefined;
}

/** An Origin header that names an http(s) origin exactly (not `null`, not a URL with a path). */
function parsedOrigin(header: string | undefined): string | undefined {
  if (!header || header.length > 300 || !URL.canParse(header)) return undefined;
  const u = new URL(header);
  return /^https?:$/.test(u.protocol) && u.origin === header ? header : undefined;
}

export default fp(
  async (app: FastifyInstance) => {
    const delegator = async (req: FastifyRequest): Promise<FastifyCorsOptions> => {
      const origin = parsedOrigin(req.headers.origin);
      const kind = origin ? corsKind(req.url.split('?')[0]) : undefined;
      if (!origin || !kind) return { origin: false };
      if (kind === 'registered') {
        if (!(await isRegisteredOrigin(app.pg, origin))) return { origin: false };
        return { origin, methods: ['POST'], allowedHeaders: ['Authorization', 'Content-Type'], maxAge: PREFLIGHT_SECONDS };
      }
      return {
        origin,
        methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
        allowedHeaders: FHIR_REQUEST_HEADERS,
        exposedHeaders: EXPOSED_HEADERS,
        maxAge: PREFLIGHT_SECONDS,
      };
    };
    await app.register(fastifyCors, { delegator });
  },
  { name: 'cors', dependencies: ['db'] },
);
