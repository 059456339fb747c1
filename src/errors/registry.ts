/**
 * Every error code Tributary answers with outside FHIR (FHIR errors are OperationOutcomes, see
 * src/fhir/errors.ts), each once, with its HTTP status and what it means. The README's "Error
 * codes" table lists the same codes; test/unit/errors/registry.test.ts keeps the two in step.
 *
 * Two families:
 * - `api`: the user-management, connect, directory and admin APIs. The body is the 1upHealth
 *   shape, `{ success: false, error: <message>, code: <code> }` (`success` only where 1upHealth
 *   has it); the message says what to do next, the code is for programs.
 * - `oauth`: the codes of OAuth 2.0 (RFC 6749 §5.2 and §4.1.2.1, RFC 7009, RFC 8628 §3.5) as the
 *   token, revocation and authorization endpoints and the connect flow's return to the app use
 *   them: `{ error: <code>, error_description: <message> }` or the same as query parameters.
 *
 * See: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
 */

export interface ErrorDefinition {
  family: 'api' | 'oauth';
  status: number;
  /** What the code means, as the README documents it. */
  meaning: string;
}

export const ERRORS = {
  // --- api ------------------------------------------------------------------------------------
  client_unauthenticated: { family: 'api', status: 401, meaning: 'The app’s client_id and client_secret are missing or wrong.' },
  user_token_missing: {
    family: 'api',
    status: 401,
    meaning: 'The call needs the user’s access token (Authorization: Bearer), and has none or an unknown one.',
  },
  user_token_scope: {
    family: 'api',
    status: 403,
    meaning: 'The token is not the app’s token for its user (scope user/*.*), so it may not manage connections.',
  },
  invalid_parameter: {
    family: 'api',
    status: 400,
    meaning: 'A parameter or field is missing or out of range; the message names it and says what it takes.',
  },
  rate_limited: {
    family: 'api',
    status: 429,
    meaning: 'The app made more user-management calls this hour than the server allows; Retry-After says when to try again.',
  },
  user_exists: {
    family: 'api',
    status: 200,
    meaning: 'A user with this app_user_id exists already (200, as 1upHealth answers); nothing was changed.',
  },
  no_such_user: { family: 'api', status: 404, meaning: 'The app has no (active) user by that app_user_id or oneup_user_id.' },
  app_user_id_taken: { family: 'api', status: 409, meaning: 'Another user of the app already has this app_user_id.' },
  username_taken: { family: 'api', status: 409, meaning: 'Another user of the app already has this username.' },
  no_such_connection: { family: 'api', status: 404, meaning: 'The user has no connection by that id.' },
  no_webhook: { family: 'api', status: 404, meaning: 'The app has no webhook yet; PUT /connect/webhook sets one.' },
  webhook_secret_given: { family: 'api', status: 400, meaning: 'A webhook was sent with a secret; the server makes the secret and answers it once.' },
  no_encryption_key: {
    family: 'api',
    status: 503,
    meaning: 'The server has no ENCRYPTION_KEY, so it cannot keep secrets (webhook secrets, health-system tokens).',
  },
  database_timeout: {
    family: 'api',
    status: 504,
    meaning: 'A database statement ran past DB_STATEMENT_TIMEOUT_MS and was cancelled; nothing it changed was kept. Retry, or narrow the request.',
  },
  admin_disabled: { family: 'api', status: 404, meaning: 'The admin API is off: the server has no ADMIN_KEY.' },
  admin_unauthorized: { family: 'api', status: 401, meaning: 'The admin API needs Authorization: Bearer <ADMIN_KEY>.' },
  no_such_app: { family: 'api', status: 404, meaning: 'No app has that client_id.' },
  sandbox_local_only: {
    family: 'api',
    status: 403,
    meaning: 'The sandbox systems’ settings answer only on this machine (loopback), not from the network.',
  },
  no_such_sandbox: { family: 'api', status: 404, meaning: 'No sandbox health system has that name; the message lists them.' },
  no_such_sandbox_patient: { family: 'api', status: 404, meaning: 'The sandbox system has no patient with that username.' },
  demo_user_refused: { family: 'api', status: 502, meaning: 'The demo app asked the user-management API for a user, and it refused.' },
  // --- oauth ----------------------------------------------------------------------------------
  invalid_request: {
    family: 'oauth',
    status: 400,
    meaning:
      'A parameter is missing, repeated or malformed (state, PKCE, aud, code, grant_type, token), or the health system is not in the directory.',
  },
  invalid_client: {
    family: 'oauth',
    status: 401,
    meaning: 'The app could not be authenticated: wrong secret, wrong method for this app, or an invalid client assertion.',
  },
  invalid_grant: {
    family: 'oauth',
    status: 400,
    meaning: 'The code or refresh token is unknown, used, expired or another app’s, or the PKCE verifier does not match.',
  },
  unauthorized_client: {
    family: 'oauth',
    status: 400,
    meaning: 'The app may not use this grant (a public app: authorization_code and refresh_token only), or the health system refused it.',
  },
  unsupported_grant_type: { family: 'oauth', status: 400, meaning: 'grant_type is not authorization_code, refresh_token or client_credentials.' },
  unsupported_response_type: { family: 'oauth', status: 400, meaning: 'An authorization request with a response_type other than code.' },
  invalid_scope: { family: 'oauth', status: 400, meaning: 'The scopes asked for are unknown, or none is one the app may have.' },
  access_denied: { family: 'oauth', status: 400, meaning: 'The person declined, at Tributary’s sign-in or at the health system.' },
  slow_down: {
    family: 'oauth',
    status: 429,
    meaning: 'Too many token requests a minute from one address or for one client_id; Retry-After says when.',
  },
  server_error: {
    family: 'oauth',
    status: 502,
    meaning: 'The health system answered the connect flow with an error or nothing usable, or the server cannot keep its token.',
  },
  temporarily_unavailable: { family: 'oauth', status: 504, meaning: 'The request or the health system took too long; try again.' },
} as const satisfies Record<string, ErrorDefinition>;

export type ErrorCode = keyof typeof ERRORS;
export type ApiErrorCode = { [K in ErrorCode]: (typeof ERRORS)[K]['family'] extends 'api' ? K : never }[ErrorCode];
export type OAuthErrorCode = Exclude<ErrorCode, ApiErrorCode>;

/** An error of the `api` family: its code, its status from the registry, and a message that says what to do. */
export class ApiError extends Error {
  readonly code: ApiErrorCode;
  readonly status: number;
  constructor(code: ApiErrorCode, message: string) {
    super(message);
    this.code = code;
    this.status = ERRORS[code].status;
  }

  /** The body in the 1upHealth shape (`success: false` only where 1upHealth's APIs carry it). */
  body(oneUpShape = true): { success?: false; error: string; code: ApiErrorCode } {
    return oneUpShape ? { success: false, error: this.message, code: this.code } : { error: this.message, code: this.code };
  }
}
