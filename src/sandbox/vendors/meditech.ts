/**
 * The MEDITECH profile: Expanse's "Interoperability Services: US Core STU6" API as its
 * CapabilityStatement describes it (ehr-behaviour.md §4). `Patient/$everything` is listed and
 * served, with `start`/`end`; `_since` is accepted there and ignored (the whole chart every time:
 * MEDITECH documents `_since` for `$export` only); no resource lists `_lastUpdated` (ignored);
 * paging by a `continue` parameter; CarePlan with `patient` alone works.
 *
 * This file holds the rules as functions of the request and the records (no HTTP); the facade
 * applies them around the ordinary FHIR routes.
 */
import { randomBytes } from 'node:crypto';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import type { SandboxAuth } from '../systems.ts';
import {
  capabilityFor,
  PageTokens,
  queryKey,
  toPublic,
  type FacadeAnswer,
  type FacadeRequest,
  type InternalFhir,
  passOn,
  type InternalAnswer,
} from './facade.ts';

/** The SandboxDefinition fields of the MEDITECH sandbox (its directory entry, its app, its records). */
export const MEDITECH_SYSTEM = {
  name: 'meditech',
  title: 'Riverbend Hospital (MEDITECH-like sandbox)',
  directoryId: 'sandbox-meditech',
  clientId: 'tributary-meditech',
  /** §4 "OAuth": client_secret_post among those listed. */
  auth: 'client_secret_post' as SandboxAuth,
  /** §4 "`$everything` / `_since`": Patient/$everything listed. */
  everything: true,
  seed: 'meditech',
  idPrefix: 'mt',
  patients: 3,
  years: 3,
  city: 'Westwood',
  state: 'MA',
  zip: '02090',
  vendor: 'meditech',
  /** Shown in the directory's vendor column. */
  vendorLabel: 'MEDITECH (simulated)',
  /** The public FHIR base, under BASE_URL. */
  basePath: '/sandbox/meditech/v2/uscore/STU6',
  /** Lifetimes unconfirmed (§4): an hour, refresh rotating, as the auth server does. */
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
    'Practitioner',
    'Organization',
    'Location',
    'Provenance',
  ],
} as const;

/** Paging: `next` carries `continue=<opaque>` (§4 "Paging": "ID to allow continuation"). */
export const MEDITECH_PAGING = { style: 'continue', param: 'continue' } as const;

/** Parameters MEDITECH does not list on any search and ignores (§4 "`_lastUpdated`": not listed on any resource). */
export const MEDITECH_IGNORED = ['_lastUpdated', '_since'] as const;

/** The parameters each type lists (§4 "Search params", from the Greenfield CapabilityStatement). */
export const MEDITECH_SEARCH: Readonly<Record<string, readonly string[]>> = {
  Patient: ['_id', 'identifier', 'name', 'birthdate', 'gender'],
  Observation: ['_id', 'patient', 'category', 'code', 'date', '_count', 'continue'],
  CarePlan: ['_id', 'patient', 'category', 'status'],
  DocumentReference: ['_id', 'patient', 'type', 'period', 'start', 'end', 'status', 'on-demand', 'encounter', 'category', 'date'],
};

const drop = (params: URLSearchParams, names: readonly string[]): URLSearchParams =>
  new URLSearchParams([...params].filter(([k]) => !names.some((n) => n.toLowerCase() === k.toLowerCase())));

/** A type search's parameters as MEDITECH takes them: `_lastUpdated` and `_since` dropped, the rest passed on. */
export function meditechSearch(params: URLSearchParams): URLSearchParams {
  return drop(params, MEDITECH_IGNORED);
}

export interface EverythingQuery {
  /** What to pass to the store's `$everything` (`_since` dropped: ignored, §4; `start`/`end` applied by the facade). */
  params: URLSearchParams;
  start?: string;
  end?: string;
}

/**
 * `Patient/{id}/$everything` as MEDITECH takes it: `_since` accepted and ignored (§4: the whole
 * chart every time), `start` and `end` kept for the facade to filter each page by.
 */
export function meditechEverything(params: URLSearchParams): EverythingQuery | { refused: string } {
  const start = params.get('start') ?? undefined;
  const end = params.get('end') ?? undefined;
  for (const [name, v] of [
    ['start', start],
    ['end', end],
  ] as const) {
    if (v !== undefined && !/^\d{4}(-\d{2}(-\d{2})?)?$/.test(v))
      return { refused: `${name} is a date (YYYY, YYYY-MM or YYYY-MM-DD), got ${v.slice(0, 40)}.` };
  }
  return { params: drop(params, ['_since', '_lastUpdated', 'start', 'end']), start, end };
}

/** The care date of a resource, where it has one (what `start` and `end` of $everything filter by). */
export function careDate(r: Resource): string | undefined {
  const x = r as unknown as Record<string, unknown> & {
    period?: { start?: string };
    performedPeriod?: { start?: string };
    context?: { period?: { start?: string } };
  };
  const first = [
    x.effectiveDateTime,
    x.issued,
    x.period?.start,
    x.performedDateTime,
    x.performedPeriod?.start,
    x.occurrenceDateTime,
    x.authoredOn,
    x.recordedDate,
    x.onsetDateTime,
    x.date,
    x.created,
  ];
  return first.find((d): d is string => typeof d === 'string');
}

/**
 * Whether a resource of $everything falls in [start, end] (dates compared at the precision given;
 * `end` inclusive). A resource without a care date (the Patient, a Practitioner, a Binary) is always in.
 */
export function inCareWindow(r: Resource, start?: string, end?: string): boolean {
  const d = careDate(r);
  if (!d) return true;
  if (start && d.slice(0, start.length) < start) return false;
  if (end && d.slice(0, end.length) > end) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// The facade: MEDITECH's answers around the ordinary FHIR routes

/**
 * The MEDITECH facade: `serve` answers one GET at the public base as MEDITECH would, from the
 * ordinary routes. One per process (it remembers `continue` tokens).
 */
export function createMeditechFacade() {
  const pages = new PageTokens();
  return {
    expirePages: () => pages.clear(),
    async serve(req: FacadeRequest, fhir: InternalFhir): Promise<FacadeAnswer> {
      const answer = (status: number, body: unknown): FacadeAnswer => ({
        status,
        headers: {},
        contentType: 'application/fhir+json',
        body: JSON.stringify(body),
      });
      const refuse = (diagnostics: string) =>
        answer(400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', diagnostics }] });
      const pass = (a: InternalAnswer) => passOn(a, fhir, req);
      if (req.path === 'metadata') {
        const cs = await fhir.get('metadata');
        return answer(
          cs.status,
          capabilityFor(cs.body, (_type, name) => name.toLowerCase() !== '_lastupdated', fhir.tokenEndpoint, MEDITECH_SYSTEM.types),
        );
      }
      const segments = req.path.split('/');
      const everything = segments.length === 3 && segments[0] === 'Patient' && segments[2] === '$everything';
      if (segments.length > 1 && !everything) return pass(await fhir.get(`${req.path}${req.query.size ? `?${req.query}` : ''}`));
      const token = req.query.get(MEDITECH_PAGING.param);
      const rest = new URLSearchParams([...req.query].filter(([k]) => k !== MEDITECH_PAGING.param));
      let window: { start?: string; end?: string } = {};
      let internalPath: string;
      if (everything) {
        const e = meditechEverything(rest);
        if ('refused' in e) return refuse(e.refused);
        window = { start: e.start, end: e.end };
        internalPath = `${req.path}${e.params.size ? `?${e.params}` : ''}`;
      } else {
        internalPath = `${req.path}?${meditechSearch(rest)}`;
      }
      if (token !== null) {
        const next = pages.get(`${queryKey(req.path, rest, MEDITECH_PAGING.param)}#${token}`);
        if (!next)
          return answer(400, {
            resourceType: 'OperationOutcome',
            issue: [{ severity: 'error', code: 'processing', diagnostics: 'The continuation is not known or has expired; start the search again.' }],
          });
        internalPath = next;
      }
      const page = await fhir.get(internalPath);
      if (page.status !== 200) return pass(page);
      const bundle = JSON.parse(toPublic(page.body, fhir.internalBase, req.base)) as Bundle;
      const internalNext = (JSON.parse(page.body) as Bundle).link?.find((l) => l.relation === 'next')?.url;
      // §4: start and end narrow $everything by care date; a page may then hold fewer than asked.
      bundle.entry = (bundle.entry ?? []).filter((e) => !e.resource || inCareWindow(e.resource, window.start, window.end));
      bundle.link = [{ relation: 'self', url: `${req.base}/${req.path}?${req.query}` }];
      if (internalNext?.startsWith(`${fhir.internalBase}/`)) {
        const id = randomBytes(12).toString('base64url');
        pages.set(`${queryKey(req.path, rest, MEDITECH_PAGING.param)}#${id}`, internalNext.slice(fhir.internalBase.length + 1));
        const p = new URLSearchParams(rest);
        p.set(MEDITECH_PAGING.param, id);
        bundle.link.push({ relation: 'next', url: `${req.base}/${req.path}?${p}` });
      }
      return answer(200, bundle);
    },
  };
}
