/**
 * The athenahealth profile: athenaOne's patient-access FHIR API as recorded traffic shows it
 * (ehr-behaviour.md §3). Ids carry the practice (`a-80000.E-…`); a MedicationRequest search
 * without `intent` is refused with a 403; Observation with `patient` alone works; paging follows
 * a `cursor` (the last id of the page); `meta.lastUpdated` is on about half the resources only;
 * entered-in-error records are returned as such; `_lastUpdated` is not listed and silently
 * ignored; every answer carries the daily quota's X-Ratelimit headers.
 *
 * This file holds the rules as functions of the request and the records (no HTTP); the facade
 * applies them around the ordinary FHIR routes.
 */
import { createHash } from 'node:crypto';
import type { OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { SandboxAuth } from '../systems.ts';
import {
  capabilityFor,
  PageTokens,
  queryKey,
  toPublic,
  type FacadeAnswer,
  type FacadeRequest,
  type InternalFhir,
  type VendorAnswer,
  passOn,
  type InternalAnswer,
} from './facade.ts';

export type { FacadeAnswer, FacadeRequest, InternalFhir, VendorAnswer } from './facade.ts';

/** The SandboxDefinition fields of the athena sandbox (its directory entry, its app, its records). */
export const ATHENA_SYSTEM = {
  name: 'athena',
  title: 'Lakeview Family Practice (athenahealth-like sandbox)',
  directoryId: 'sandbox-athena',
  clientId: 'tributary-athena',
  auth: 'client_secret_basic' as SandboxAuth,
  everything: false,
  seed: 'athena',
  /** §3 "IDs": practice-prefixed, `a-80000.E-…`. */
  idPrefix: 'a-80000.E',
  patients: 3,
  years: 3,
  city: 'Watertown',
  state: 'MA',
  zip: '02472',
  vendor: 'athena',
  /** Shown in the directory's vendor column. */
  vendorLabel: 'athenahealth (simulated)',
  /** The public FHIR base, under BASE_URL. */
  basePath: '/sandbox/athena/fhir/r4',
  /** §3 "OAuth": access tokens "valid for one hour"; refresh rotation unconfirmed (kept as the auth server does). */
  accessTokenSeconds: 3600,
  refreshRotates: true,
  /** The types it serves, for the registration's v1 per-type scopes (patient/X.read). */
  types: [
    'Patient',
    'AllergyIntolerance',
    'CarePlan',
    'CareTeam',
    'Condition',
    'Device',
    'DiagnosticReport',
    'DocumentReference',
    'Encounter',
    'Goal',
    'Immunization',
    'MedicationRequest',
    'Observation',
    'Procedure',
  ],
  /**
   * Generator options: entered-in-error records returned as such (§3 "Entered-in-error": 89 of
   * 491 Observations, 10 DiagnosticReports, 8 DocumentReferences in one patient).
   */
  generate: { vendor: { enteredInError: { Observation: 0.15, DiagnosticReport: 0.05, DocumentReference: 0.05 } } },
} as const;

/** §3 "Rate limits": a daily quota reported on every answer (not reached in tests). */
export const ATHENA_DAILY_QUOTA = 100_000;

/** Parameters athena does not list and ignores without a word (§3 "`_lastUpdated`…": not listed; observed as no filter). */
export const ATHENA_IGNORED = ['_lastUpdated', '_since'] as const;

/** Paging: `next` carries `cursor=<the last id of the page>` (§3 "`_count`, paging"). */
export const ATHENA_PAGING = { style: 'cursor', param: 'cursor' } as const;

/** §3 "Required params": MedicationRequest without `intent` → 403 `forbidden`, with athena's words. */
export const ATHENA_INTENT_REQUIRED: VendorAnswer = {
  status: 403,
  contentType: 'application/fhir+json',
  body: {
    resourceType: 'OperationOutcome',
    issue: [
      { severity: 'error', code: 'forbidden', diagnostics: 'one of the required parameter combinations [[patient,intent],[_id]] was not provided' },
    ],
  } satisfies OperationOutcome,
};

/**
 * What athena does with a search of `type`: refuse it (an answer to send), or the parameters to
 * pass on (`_lastUpdated` and `_since` dropped, as athena ignores them; the facade's own paging
 * parameter is its business).
 */
export function athenaSearch(type: string, params: URLSearchParams): { refused: VendorAnswer } | { params: URLSearchParams } {
  if (type === 'MedicationRequest' && !params.has('intent') && !params.has('_id')) return { refused: ATHENA_INTENT_REQUIRED };
  const out = new URLSearchParams();
  for (const [k, v] of params) if (!(ATHENA_IGNORED as readonly string[]).some((i) => i.toLowerCase() === k.toLowerCase())) out.append(k, v);
  return { params: out };
}

/** Whether a resource keeps its meta.lastUpdated: about half do, fixed by its id (§3 "`meta.lastUpdated`": Observation 212 of 491). */
export function athenaKeepsLastUpdated(r: Resource): boolean {
  return createHash('sha256').update(`${r.resourceType}/${r.id}`).digest()[0] < 128;
}

/**
 * A resource as athena serves it: meta.lastUpdated on about half of them (and versionId with it:
 * the rest carry neither); every resource tagged with the practice, as the ah-practice extension
 * does (§3 "`ah-practice`").
 */
export function athenaResource<T extends Resource>(r: T): T {
  const out = structuredClone(r) as T & { extension?: { url: string; valueReference?: { reference: string } }[] };
  if (out.meta && !athenaKeepsLastUpdated(r)) {
    delete out.meta.lastUpdated;
    delete out.meta.versionId;
    if (!Object.keys(out.meta).length) delete out.meta;
  }
  if (out.resourceType !== 'Binary' && out.resourceType !== 'Bundle') {
    const ext = (out.extension ?? []).filter((e) => e.url !== ATHENA_PRACTICE_EXTENSION);
    out.extension = [...ext, { url: ATHENA_PRACTICE_EXTENSION, valueReference: { reference: 'Organization/a-1.Practice-80000' } }];
  }
  return out;
}

export const ATHENA_PRACTICE_EXTENSION = 'https://fhir.athena.io/StructureDefinition/ah-practice';

/** The X-Ratelimit headers of an answer, given the calls made today (§3 "Rate limits"). */
export function athenaRateHeaders(callsToday: number): Record<string, string> {
  return { 'X-Ratelimit-Limit': String(ATHENA_DAILY_QUOTA), 'X-Ratelimit-Remaining': String(Math.max(0, ATHENA_DAILY_QUOTA - callsToday)) };
}

/** The CapabilityStatement's search parameters per type: `patient` (and the usual ones), never `_lastUpdated` (§3). */
export function athenaSearchParams(type: string): string[] {
  if (type === 'Patient') return ['_id', 'identifier', 'name', 'birthdate', 'gender'];
  const common = ['_id', 'patient'];
  const extra: Record<string, string[]> = {
    MedicationRequest: ['intent', 'status', 'authoredon'],
    Observation: ['category', 'code', 'date'],
    Condition: ['category', 'clinical-status'],
    DocumentReference: ['category', 'type', 'date'],
    DiagnosticReport: ['category', 'code', 'date'],
    Encounter: ['date', 'status'],
    CarePlan: ['category'],
    CareTeam: ['status'],
    Procedure: ['date'],
    Immunization: ['date'],
  };
  return [...common, ...(extra[type] ?? [])];
}

// ---------------------------------------------------------------------------------------------
// The facade: athena's answers around the ordinary FHIR routes

const json = (status: number, body: unknown, headers: Record<string, string> = {}): FacadeAnswer => ({
  status,
  headers,
  contentType: 'application/fhir+json',
  body: JSON.stringify(body),
});

/**
 * The athena facade: `serve` answers one GET at the public base as athena would, from the ordinary
 * routes. One per process (it remembers cursors and counts the day's calls).
 */
export function createAthenaFacade() {
  const cursors = new PageTokens();
  let day = '';
  let calls = 0;
  return {
    expirePages: () => cursors.clear(),
    async serve(req: FacadeRequest, fhir: InternalFhir): Promise<FacadeAnswer> {
      const today = new Date().toISOString().slice(0, 10);
      if (today !== day) [day, calls] = [today, 0];
      const headers = athenaRateHeaders(++calls);
      const pass = (a: InternalAnswer) => passOn(a, fhir, req, headers);
      if (req.path === 'metadata') {
        const cs = await fhir.get('metadata');
        return json(
          cs.status,
          capabilityFor(cs.body, (type, name) => athenaSearchParams(type).includes(name), fhir.tokenEndpoint, ATHENA_SYSTEM.types),
          headers,
        );
      }
      const segments = req.path.split('/');
      if (segments.length > 1) {
        const read = await fhir.get(`${req.path}${req.query.size ? `?${req.query}` : ''}`);
        if (read.status !== 200 || !read.contentType?.includes('json')) return pass(read);
        return json(200, athenaResource(JSON.parse(toPublic(read.body, fhir.internalBase, req.base))), headers);
      }
      const type = segments[0];
      const cursor = req.query.get(ATHENA_PAGING.param);
      const rest = new URLSearchParams([...req.query].filter(([k]) => k !== ATHENA_PAGING.param));
      const rules = athenaSearch(type, rest);
      if ('refused' in rules) return { ...json(rules.refused.status, rules.refused.body, headers) };
      let internalPath = `${type}?${rules.params}`;
      if (cursor !== null) {
        const next = cursors.get(`${queryKey(type, rest, ATHENA_PAGING.param)}#${cursor}`);
        if (!next)
          return json(
            400,
            {
              resourceType: 'OperationOutcome',
              issue: [{ severity: 'error', code: 'processing', diagnostics: 'The cursor is not known or has expired; start the search again.' }],
            },
            headers,
          );
        internalPath = next;
      }
      const page = await fhir.get(internalPath);
      if (page.status !== 200) return pass(page);
      const bundle = JSON.parse(page.body) as {
        link?: { relation: string; url: string }[];
        entry?: { fullUrl?: string; resource?: Resource; search?: unknown }[];
      } & Record<string, unknown>;
      const internalNext = bundle.link?.find((l) => l.relation === 'next')?.url;
      const entries = (bundle.entry ?? []).filter((e) => e.resource?.resourceType !== 'OperationOutcome');
      const self = `${req.base}/${type}?${req.query}`;
      const links = [{ relation: 'self', url: self }];
      const lastId = entries.at(-1)?.resource?.id;
      if (internalNext && lastId && internalNext.startsWith(`${fhir.internalBase}/`)) {
        cursors.set(`${queryKey(type, rest, ATHENA_PAGING.param)}#${lastId}`, internalNext.slice(fhir.internalBase.length + 1));
        const p = new URLSearchParams(rest);
        p.set(ATHENA_PAGING.param, lastId);
        links.push({ relation: 'next', url: `${req.base}/${type}?${p}` });
      }
      const out = {
        resourceType: 'Bundle',
        type: 'searchset',
        ...(typeof bundle.total === 'number' ? { total: bundle.total } : {}),
        link: links,
        entry: entries.map((e) => ({
          fullUrl: `${req.base}/${e.resource!.resourceType}/${e.resource!.id}`,
          resource: athenaResource(JSON.parse(toPublic(JSON.stringify(e.resource), fhir.internalBase, req.base)) as Resource),
          search: { mode: 'match' },
        })),
      };
      return json(200, out, headers);
    },
  };
}
