/**
 * Changes a sandbox patient's records at the source, as a health system's records change between
 * two syncs: a value edited, a record entered in error, a record deleted (ehr-behaviour.md, "What
 * breaks a naive sync" 15: entered-in-error is a status change; a deletion shows only as a record
 * a full sweep no longer returns). For `POST /admin/sandbox/{name}/records`.
 *
 *   parseMutation(body: unknown): Mutation | string
 *   mutateRecords(deps: MutateDeps, appId: number, m: Mutation): Promise<MutationResult>  (throws MutateError)
 *
 * The records are picked in the order they were first stored (the oldest first), those already
 * in the state asked skipped, so the same call on the same data picks the same records. Each write
 * makes a new version (meta.lastUpdated now), as at the source.
 */
import { ApiError } from '../errors/registry.ts';
import type pg from 'pg';
import type { Resource } from '@medplum/fhirtypes';
import { writeResources, type BulkDeps } from '../fhir/bulk.ts';
import { checkType } from '../fhir/service.ts';
import { inTransaction } from '../storage/transaction.ts';
import * as sql from './sql.ts';

export type MutateAction = 'change' | 'enter-in-error' | 'delete';

export interface Mutation {
  /** The patient's sign-in username at the sandbox system. */
  username: string;
  /** A FHIR resource type, e.g. Observation. */
  type: string;
  action: MutateAction;
  /** How many records, 1 to 1,000. */
  count: number;
}

export interface MutationResult {
  type: string;
  action: MutateAction;
  /** The source ids affected (fewer than asked when the patient has fewer such records). */
  ids: string[];
}

export interface MutateDeps {
  pool: pg.Pool;
  bulk: BulkDeps;
}

/** A request the records cannot take: `status` 400 (this type cannot be changed so) or 404 (no such patient). */
/** A change the sandbox cannot make: a wrong change (invalid_parameter) or an unknown patient. */
export class MutateError extends ApiError {
  constructor(code: 'invalid_parameter' | 'no_such_sandbox_patient', message: string) {
    super(code, message);
  }
}

const ACTIONS: readonly MutateAction[] = ['change', 'enter-in-error', 'delete'];

/** The mutation in a request body, or a sentence saying what is wrong with it. */
export function parseMutation(body: unknown): Mutation | string {
  const shape = 'The body is {"username": "...", "type": "Observation", "action": "change" | "enter-in-error" | "delete", "count": 1 to 1000}.';
  if (!body || typeof body !== 'object' || Array.isArray(body)) return shape;
  const { username, type, action, count, ...rest } = body as Record<string, unknown>;
  if (Object.keys(rest).length) return `Unknown fields: ${Object.keys(rest).join(', ').slice(0, 100)}. ${shape}`;
  if (typeof username !== 'string' || !username || username.length > 200) return `username is the patient's sign-in username. ${shape}`;
  if (typeof type !== 'string' || !/^[A-Z][A-Za-z]{1,63}$/.test(type)) return `type is a FHIR resource type. ${shape}`;
  try {
    checkType(type);
  } catch {
    return `${type} is not a FHIR R4 resource type.`;
  }
  if (typeof action !== 'string' || !ACTIONS.includes(action as MutateAction)) return `action is change, enter-in-error or delete. ${shape}`;
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 1000) return `count is a whole number from 1 to 1000. ${shape}`;
  return { username, type, action: action as MutateAction, count };
}

type Json = Record<string, unknown>;
const AMENDED = 'https://tributary.dev/fhir/StructureDefinition/sandbox-amended';

/** How each type records "entered in error" (R4: a status code, or a verification status that then forbids a clinical status). */
const ENTER_IN_ERROR: Record<string, (r: Json) => void> = Object.fromEntries([
  ...[
    'Observation',
    'DiagnosticReport',
    'DocumentReference',
    'Immunization',
    'MedicationRequest',
    'Procedure',
    'Encounter',
    'CarePlan',
    'CareTeam',
    'Coverage',
    'ExplanationOfBenefit',
    'ServiceRequest',
    'MedicationStatement',
  ].map((t) => [t, (r: Json) => void (r.status = 'entered-in-error')]),
  ['Goal', (r: Json) => void (r.lifecycleStatus = 'entered-in-error')],
  // con-5 and ait-2: no clinicalStatus on a record entered in error.
  ['Condition', (r: Json) => verification(r, 'http://terminology.hl7.org/CodeSystem/condition-ver-status')],
  ['AllergyIntolerance', (r: Json) => verification(r, 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification')],
]);

function verification(r: Json, system: string): void {
  r.verificationStatus = { coding: [{ system, code: 'entered-in-error', display: 'Entered in Error' }] };
  delete r.clinicalStatus;
}

const isEnteredInError = (r: Json): boolean =>
  JSON.stringify([r.status, r.lifecycleStatus, r.verificationStatus ?? null]).includes('"entered-in-error"');

/**
 * Edits one value: an Observation's number (its first component's for a panel), a report's
 * conclusion, a document's description, a note where the type has one; otherwise an extension
 * counting the amendments. Each call changes the record again.
 */
function change(r: Json, at: string): void {
  const bump = (q: unknown): boolean => {
    const v = q as { value?: number } | undefined;
    if (typeof v?.value !== 'number') return false;
    v.value = Math.round((v.value + 1) * 100) / 100;
    return true;
  };
  if (r.resourceType === 'Observation') {
    if (bump(r.valueQuantity) || bump((r.component as Json[] | undefined)?.[0]?.valueQuantity)) return;
    if (typeof r.valueInteger === 'number') return void (r.valueInteger += 1);
  }
  const text = `Amended at the source, ${at}.`;
  if (r.resourceType === 'DiagnosticReport') return void (r.conclusion = text);
  if (r.resourceType === 'DocumentReference') return void (r.description = text);
  if (
    ['AllergyIntolerance', 'CarePlan', 'Condition', 'Goal', 'Immunization', 'MedicationRequest', 'Observation', 'Procedure'].includes(
      String(r.resourceType),
    )
  ) {
    return void (r.note = [{ text }]);
  }
  const all = (r.extension as Json[] | undefined) ?? [];
  const before = all.find((e) => e.url === AMENDED)?.valueInteger;
  r.extension = [...all.filter((e) => e.url !== AMENDED), { url: AMENDED, valueInteger: (typeof before === 'number' ? before : 0) + 1 }];
}

/** The stored JSON back as a resource to write: the version and time are the store's to set. */
function writable(json: string): Json {
  const r = JSON.parse(json) as Json & { meta?: Json };
  if (r.meta) {
    delete r.meta.versionId;
    delete r.meta.lastUpdated;
    if (!Object.keys(r.meta).length) delete r.meta;
  }
  return r;
}

/** Applies the mutation to the patient's records; answers the ids it changed. */
export async function mutateRecords(deps: MutateDeps, appId: number, m: Mutation): Promise<MutationResult> {
  if (m.action === 'enter-in-error' && !ENTER_IN_ERROR[m.type]) {
    throw new MutateError(
      'invalid_parameter',
      `${m.type} has no entered-in-error status here; the types that do: ${Object.keys(ENTER_IN_ERROR).join(', ')}.`,
    );
  }
  if (m.action === 'change' && m.type === 'Binary')
    throw new MutateError('invalid_parameter', 'A Binary cannot be changed here; delete it, or change its DocumentReference.');
  const { rows: users } = await deps.pool.query<{ id: string }>(sql.userByUsername(appId, m.username));
  if (!users[0]) throw new MutateError('no_such_sandbox_patient', `This sandbox system has no patient with the username ${m.username.slice(0, 64)}.`);
  const scope = { partitionId: appId, ownerId: users[0].id };
  return inTransaction(deps.pool, async (c) => {
    // Serializes mutations of one patient: two at once pick disjoint records.
    await c.query(sql.patientLock(users[0].id));
    const ids: string[] = [];
    for (let offset = 0; ids.length < m.count; offset += 500) {
      const { rows } = await c.query<{ fhir_id: string; res_text_vc: string | null }>(sql.recordsOfType(appId, users[0].id, m.type, 500, offset));
      for (const row of rows) {
        if (ids.length === m.count) break;
        if (row.res_text_vc === null || (m.action === 'enter-in-error' && isEnteredInError(JSON.parse(row.res_text_vc)))) continue;
        ids.push(row.fhir_id);
      }
      if (rows.length < 500) break;
    }
    // The full JSON (profiles and tags are kept apart from the stored text).
    const current = await deps.bulk.repo.readCurrentMany(
      c,
      scope,
      ids.map((id) => ({ type: m.type, id })),
    );
    const at = new Date().toISOString();
    const wanted = ids.map((id) => {
      if (m.action === 'delete') return { type: m.type, id, resource: null };
      const resource = writable(current.get(`${m.type}/${id}`)!.json!);
      if (m.action === 'change') change(resource, at);
      else ENTER_IN_ERROR[m.type](resource);
      return { type: m.type, id, resource: resource as unknown as Resource };
    });
    await writeResources(deps.bulk, c, scope, wanted);
    return { type: m.type, action: m.action, ids };
  });
}
