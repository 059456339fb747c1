/**
 * The one error type for FHIR: an OperationOutcome with the HTTP status it answers with.
 * See: https://hl7.org/fhir/R4/operationoutcome.html and https://hl7.org/fhir/R4/http.html#Status-Codes
 */
import { OperationOutcomeError } from '@medplum/core';
import type { OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';

export type IssueCode = OperationOutcomeIssue['code'];

export class FhirError extends OperationOutcomeError {
  readonly status: number;
  constructor(status: number, outcome: OperationOutcome) {
    super(outcome);
    this.status = status;
  }
}

export function outcome(severity: OperationOutcomeIssue['severity'], code: IssueCode, diagnostics: string, expression?: string[]): OperationOutcome {
  const issue: OperationOutcomeIssue = { severity, code, diagnostics };
  if (expression?.length) issue.expression = expression;
  return { resourceType: 'OperationOutcome', issue: [issue] };
}

export function fhirError(status: number, code: IssueCode, diagnostics: string, expression?: string[]): FhirError {
  return new FhirError(status, outcome('error', code, diagnostics, expression));
}

export function issuesError(status: number, issues: OperationOutcomeIssue[]): FhirError {
  return new FhirError(status, { resourceType: 'OperationOutcome', issue: issues });
}

export const badRequest = (msg: string, expression?: string[]) => fhirError(400, 'invalid', msg, expression);
export const notFound = (msg: string) => fhirError(404, 'not-found', msg);
export const gone = (msg: string) => fhirError(410, 'deleted', msg);
export const conflict = (msg: string) => fhirError(409, 'conflict', msg);
export const preconditionFailed = (msg: string) => fhirError(412, 'conflict', msg);

/** A success outcome (for Prefer: return=OperationOutcome and batch entries). */
export function informational(msg: string): OperationOutcome {
  return outcome('information', 'informational', msg);
}

/**
 * Turns a PostgreSQL error into a FhirError when the client caused it (a conflict between
 * concurrent writers); anything else stays a server error.
 */
export function fromDatabaseError(err: unknown): unknown {
  const { code, constraint } = (err ?? {}) as { code?: string; constraint?: string };
  // The id of a new resource is held by a resource the request cannot see (another user's of the
  // same app), or was taken by a concurrent create: retrying cannot help.
  if (code === '23505' && constraint === 'idx_res_type_fhir_id')
    return conflict('This id is already in use in this app; choose another id, or POST to let the server choose one.');
  if (code === '23505') return conflict('The resource was changed by another request at the same time; retry.');
  if (code === '40001' || code === '40P01') return conflict('The write conflicted with a concurrent transaction; retry.');
  // statement_timeout (DB_STATEMENT_TIMEOUT_MS) cancelled the statement: the connection is free
  // again, the request may be retried or narrowed.
  if (code === '57014')
    return fhirError(
      504,
      'timeout',
      "The database took too long to answer (the search or operation ran past the server's statement timeout); retry, or narrow the request.",
    );
  if (code === '22P05' || code === '22021') return badRequest('The request contains text PostgreSQL cannot store (such as a NUL character).');
  if (code === '22001') return badRequest('A value is longer than the server stores (meta.source holds at most 2,000 characters).');
  return err;
}
