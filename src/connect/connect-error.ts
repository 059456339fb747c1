/** Why a connection could not be made: `code` is the OAuth-style error the app hears. */
export class ConnectError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}
