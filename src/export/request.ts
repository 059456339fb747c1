/**
 * A Bulk Data kick-off's parameters, from the query string (GET) or a Parameters body (POST),
 * checked before anything is queued: what is wrong is a 400 now, not a failed export later.
 * See: https://hl7.org/fhir/uv/bulkdata/export.html#query-parameters
 */
import type { Parameters } from '@medplum/fhirtypes';
import { badRequest } from '../fhir/errors.ts';
import { dateParam } from '../fhir/query-params.ts';
import { checkId, checkType } from '../fhir/service.ts';

export type ExportLevel = 'system' | 'patient' | 'group';

/** What an export takes, as kept with it (trb_export.params). */
export interface ExportRequest {
  level: ExportLevel;
  /** Group/[id]/$export: the Group. */
  groupId?: string;
  /** `_type`; null: every type the scope holds. */
  types: string[] | null;
  /** `_since` (an ISO instant): what changed after it. */
  since: string | null;
  /** `_typeFilter`, per type: its queries, any of which a resource matches. */
  typeFilters: Record<string, [string, string][][]>;
  /** `patient` (Patient and Group levels): the Patients' ids, whose records only. */
  patients: string[] | null;
}

const FORMATS = new Set(['application/fhir+ndjson', 'application/ndjson', 'ndjson']);
const TAKEN = ['_outputFormat', '_since', '_type', '_typeFilter', 'patient'];

/** The parameters of a kick-off as name/value pairs (a reference's `reference` for `patient`). */
export function kickoffPairs(query: URLSearchParams, body: unknown): [string, string][] {
  const pairs: [string, string][] = [...query].filter(([k]) => k !== '_format' && k !== '_pretty');
  if (body === undefined || body === null) return pairs;
  const p = body as Parameters;
  if (p.resourceType !== 'Parameters') throw badRequest('A POST $export takes a Parameters resource (application/fhir+json).');
  for (const param of p.parameter ?? []) {
    const value =
      param.valueString ?? param.valueInstant ?? param.valueDateTime ?? param.valueCode ?? param.valueReference?.reference ?? param.valueUri;
    if (!param.name || value === undefined) throw badRequest(`The parameter "${String(param.name).slice(0, 50)}" of the Parameters has no value.`);
    pairs.push([param.name, value]);
  }
  return pairs;
}

/** The export a kick-off asks for; `lenient` (Prefer: handling=lenient) ignores parameters it does not take. */
export function parseExportRequest(level: ExportLevel, pairs: [string, string][], lenient: boolean, groupId?: string): ExportRequest {
  const req: ExportRequest = { level, ...(groupId ? { groupId } : {}), types: null, since: null, typeFilters: {}, patients: null };
  for (const [name, value] of pairs) {
    if (name === '_outputFormat') {
      if (!FORMATS.has(value))
        throw badRequest(`_outputFormat ${value.slice(0, 50)} is not supported; use application/fhir+ndjson (the only format exported).`);
    } else if (name === '_since') {
      req.since = dateParam(value, '_since')!.toISOString();
    } else if (name === '_type') {
      const types = value.split(',').map((t) => t.trim());
      for (const t of types) checkTypeName(t, '_type');
      req.types = [...new Set([...(req.types ?? []), ...types])];
    } else if (name === '_typeFilter') {
      const q = value.indexOf('?');
      const type = q < 0 ? value : value.slice(0, q);
      checkTypeName(type, '_typeFilter');
      const criteria = [...new URLSearchParams(q < 0 ? '' : value.slice(q + 1))];
      if (!criteria.length) throw badRequest(`_typeFilter ${value.slice(0, 80)} has no criteria; write it as Type?param=value.`);
      (req.typeFilters[type] ??= []).push(criteria);
    } else if (name === 'patient') {
      if (level === 'system') throw badRequest('patient applies to Patient/$export and Group/[id]/$export, not to a system-level export.');
      const id = value.replace(/^.*\/Patient\//, '').replace(/^Patient\//, '');
      checkId(id);
      req.patients = [...new Set([...(req.patients ?? []), id])];
    } else if (!lenient) {
      throw badRequest(
        `$export does not take "${name.slice(0, 50)}": it takes ${TAKEN.join(', ')} (send Prefer: handling=lenient to have others ignored).`,
      );
    }
  }
  if (req.types) {
    for (const t of Object.keys(req.typeFilters)) {
      if (!req.types.includes(t)) throw badRequest(`_typeFilter names ${t}, which _type leaves out; add it to _type or drop the filter.`);
    }
  }
  return req;
}

function checkTypeName(t: string, param: string): void {
  try {
    checkType(t);
  } catch {
    throw badRequest(`${param}: "${t.slice(0, 50)}" is not a FHIR R4 resource type.`);
  }
}
