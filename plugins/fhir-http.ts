/**
 * HTTP details of the FHIR API that every route shares: body parsing (strict UTF-8, JSON, depth),
 * format negotiation, and writing resources and OperationOutcomes.
 * See: https://hl7.org/fhir/R4/http.html#mime-type
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { OperationOutcome } from '@medplum/fhirtypes';
import { badRequest, fhirError } from '../src/fhir/errors.ts';
import { single } from '../src/fhir/query-params.ts';

export { single };

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const MAX_DEPTH = 64;
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Deepest nesting of arrays and objects, without recursion (a hostile body cannot overflow the stack). */
export function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++;
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) max = depth;
    } else if (c === 125 || c === 93) depth--;
  }
  return max;
}

/** Parses a JSON request body: valid UTF-8, valid JSON, nesting at most MAX_DEPTH. */
export function parseJsonBody(body: Buffer): unknown {
  let text: string;
  try {
    text = decoder.decode(body);
  } catch {
    throw badRequest('The body is not valid UTF-8.');
  }
  if (text.trim() === '') throw badRequest('The body is empty; send a FHIR resource as JSON.');
  if (jsonDepth(text) > MAX_DEPTH) throw badRequest(`The JSON is nested more than ${MAX_DEPTH} levels deep.`);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw badRequest(`The body is not valid JSON: ${(err as Error).message}`);
  }
}

/** Answers 406 when the client asks for a format other than JSON (_format wins over Accept). */
export function checkAcceptable(req: FastifyRequest): void {
  const format = (req.query as Record<string, unknown>)._format;
  if (format !== undefined) {
    const f = String(format).toLowerCase();
    if (!['json', 'application/json', 'application/fhir+json'].includes(f)) {
      throw fhirError(406, 'not-supported', `_format "${f}" is not supported; this server speaks JSON (application/fhir+json).`);
    }
    return;
  }
  const accept = req.headers.accept;
  if (!accept || typeof accept !== 'string') return;
  const types = accept.split(',').map((t) => t.split(';')[0].trim().toLowerCase());
  const ok = types.some((t) => t === '*/*' || t === 'application/*' || t.endsWith('json') || t === 'text/html' || t === '');
  if (!ok) throw fhirError(406, 'not-supported', `Accept "${accept}" names no format this server speaks; ask for application/fhir+json.`);
}

export function isPretty(req: FastifyRequest): boolean {
  return (req.query as Record<string, unknown> | null)?._pretty === 'true';
}

/** Sends a JSON string or value as application/fhir+json (pretty when asked). */
export function sendJson(req: FastifyRequest, reply: FastifyReply, status: number, body: string | object): FastifyReply {
  let text = typeof body === 'string' ? body : JSON.stringify(body);
  if (isPretty(req)) text = JSON.stringify(JSON.parse(text), null, 2);
  return reply.code(status).type(FHIR_JSON).send(text);
}

export function sendOutcome(req: FastifyRequest, reply: FastifyReply, status: number, outcome: OperationOutcome): FastifyReply {
  return sendJson(req, reply, status, outcome);
}

/**
 * A header that must be sent at most once. Node joins repeated headers with ", " (so a repeated
 * If-None-Exist would silently become one garbled search), hence the count over the raw headers.
 */
export function headerOnce(req: FastifyRequest, name: string): string | undefined {
  const lower = name.toLowerCase();
  const raw = req.raw.rawHeaders;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === lower) seen++;
  if (seen > 1) throw badRequest(`${name} must be given once; it was given ${seen} times.`);
  return single(req.headers[lower], name);
}
