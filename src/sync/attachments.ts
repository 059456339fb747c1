/**
 * Note contents: the attachments of DocumentReference and DiagnosticReport.presentedForm fetched
 * and stored as Binary in the user's records (stub: filled in next).
 */
import type pg from 'pg';
import type { Resource } from '@medplum/fhirtypes';
import type { BulkDeps } from '../fhir/bulk.ts';
import type { Scope } from '../fhir/ports.ts';
import type { Origin } from './mapper.ts';
import type { SourceSession } from './session.ts';

export interface AttachmentContext {
  session: SourceSession;
  pool: pg.Pool;
  deps: BulkDeps;
  scope: Scope;
  origin: Origin;
  connectionId: string;
  maxBytes: number;
  budget: { left: number };
}

/** The local `Binary/<id>` of each attachment of these resources that is stored (fetching those not stored yet, within budget); keyed by the attachment url as written in the source resource. */
export async function prepareAttachments(_ctx: AttachmentContext, _resources: Resource[]): Promise<Map<string, string>> {
  return new Map();
}
