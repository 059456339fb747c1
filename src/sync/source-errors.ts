/** What a request to a health system ends with when it does not succeed (src/sync/session.ts). */
export class NeedsReauth extends Error {}
export class SourceError extends Error {
  readonly status: number;
  /** The answer's body: parsed JSON when it is JSON (an OperationOutcome, mostly), else its text, at most 2,000 characters. */
  readonly body?: unknown;
  readonly contentType?: string;
  constructor(status: number, message: string, body?: unknown, contentType?: string) {
    super(message);
    this.status = status;
    this.body = body;
    this.contentType = contentType;
  }
}
/** An answer longer than the caller's limit: not read past it. */
export class TooLarge extends Error {
  /** The size the system stated (Content-Length), when it did. */
  readonly size?: number;
  constructor(message: string, size?: number) {
    super(message);
    this.size = size;
  }
}
