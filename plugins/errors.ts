/**
 * Every error becomes an OperationOutcome: FhirErrors keep their status, Fastify's own client
 * errors (body too large, bad content type, malformed JSON) map to their 4xx, anything else is
 * a 500 that is logged without the request's headers. A statement timeout (57014) is a 504: an
 * OperationOutcome (code `timeout`) on FHIR routes, the API's own error shape on the others.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { FhirError, fromDatabaseError, outcome } from '../src/fhir/errors.ts';
import { sendOutcome } from './fhir-http.ts';
import { sendApiError } from '../src/errors/http.ts';

/** Paths whose errors are JSON of their own (README: the connect and user-management APIs, OAuth2). */
const OWN_SHAPE = /^\/(connect|user-management|admin)\//;
const OAUTH = /^\/(fhir\/)?oauth2\//;

export function errorHandler(err: FastifyError, req: FastifyRequest, reply: FastifyReply) {
  const mapped = fromDatabaseError(err);
  // A statement past DB_STATEMENT_TIMEOUT_MS: a 504 in the shape of the API asked.
  if (mapped instanceof FhirError && mapped.status === 504) {
    const path = req.url.split('?')[0];
    req.log.warn({ route: req.routeOptions.url ?? 'unmatched' }, 'statement timeout');
    const message = 'The database took too long to answer; retry, or narrow the request.';
    if (OAUTH.test(path))
      return reply.code(504).header('Cache-Control', 'no-store').send({ error: 'temporarily_unavailable', error_description: message });
    if (OWN_SHAPE.test(path)) return sendApiError(reply, 'database_timeout', message);
  }
  if (mapped instanceof FhirError) return sendOutcome(req, reply, mapped.status, mapped.outcome);
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return sendOutcome(req, reply, 413, outcome('error', 'too-costly', `The body is larger than the limit of ${req.server.config.bodyLimit} bytes.`));
  }
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return sendOutcome(req, reply, 415, outcome('error', 'not-supported', 'Unsupported Content-Type; send application/fhir+json.'));
  }
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return sendOutcome(req, reply, err.statusCode, outcome('error', 'invalid', err.message));
  }
  req.log.error({ err: { message: err.message, stack: err.stack, code: err.code } }, 'request failed');
  return sendOutcome(req, reply, 500, outcome('fatal', 'exception', `Internal error (request ${req.id}); the server log has the details.`));
}
