/**
 * An `api` error as a reply: the registry's status, the 1upHealth body shape, the code.
 */
import type { FastifyReply } from 'fastify';
import { ApiError, type ApiErrorCode } from './registry.ts';

/**
 * Sends `{ success: false, error: message, code }` with the code's status; `oneUpShape: false`
 * leaves out `success` (the admin API, and the answers where 1upHealth has no `success`).
 */
export function sendApiError(reply: FastifyReply, code: ApiErrorCode, message: string, oneUpShape = true): FastifyReply {
  const err = new ApiError(code, message);
  return reply.code(err.status).send(err.body(oneUpShape));
}
