import { ERRORS, type OAuthErrorCode } from '../errors/registry.ts';

/** An OAuth 2.0 error of the token, revocation and introspection endpoints (RFC 6749 §5.2), its status from the registry. */
export class OAuthError extends Error {
  readonly error: OAuthErrorCode;
  readonly status: number;
  constructor(error: OAuthErrorCode, description: string) {
    super(description);
    this.error = error;
    this.status = ERRORS[error].status;
  }
}
