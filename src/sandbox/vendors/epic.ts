/**
 * The Epic profile: Epic's R4 patient-access API as recorded sandbox traffic and its
 * CapabilityStatement show it (ehr-behaviour.md §1). Observation and CarePlan refuse a search
 * without a category (Epic's error codes), Observation categories are Epic's list with some not
 * granted, Patient search is refused (read works), unscoped types are a bodiless 403 and some
 * others an IIS 404 page, Condition bundles carry an OperationOutcome entry and a `total` of the
 * page, `_lastUpdated` is listed on DocumentReference only and ignored with a warning elsewhere,
 * no resource carries meta.lastUpdated, there is no Patient/$everything, pages are server-side
 * sessions (`sessionID`) that expire, and notes are HTML Binaries negotiated by Accept (one per
 * patient refused as an unauthorised sub-type).
 *
 * The rules are functions of the request and the records; `createEpicFacade` applies them around
 * the ordinary FHIR routes (src/sandbox/vendors/facade.ts).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Binary, Bundle, BundleEntry, OperationOutcome, OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import type { SandboxAuth } from '../systems.ts';
import {
  capabilityFor,
  jsonAnswer,
  type FacadeAnswer,
  type FacadeRequest,
  type InternalFhir,
  type VendorFacade,
  passOn,
  type InternalAnswer,
  publicOf,
} from './facade.ts';

/** Types Epic lists but a patient app is not scoped for: 403 with no body (§1 "Refused types"). */
export const EPIC_UNSCOPED = [
  'Account',
  'Appointment',
  'Consent',
  'Coverage',
  'FamilyMemberHistory',
  'MedicationDispense',
  'NutritionOrder',
  'Questionnaire',
  'QuestionnaireResponse',
  'ServiceRequest',
  'Specimen',
] as const;
/** Types answered with an IIS 404 HTML page, not an OperationOutcome (§1 "Refused types"). */
export const EPIC_IIS_404 = ['InsurancePlan', 'Person', 'Provenance', 'Schedule', 'Slot'] as const;

/** The SandboxDefinition fields of the Epic sandbox (its directory entry, its app, its records). */
export const EPIC_SYSTEM = {
  name: 'epic',
  title: 'Evergreen Health (Epic-like sandbox)',
  directoryId: 'sandbox-epic',
  clientId: 'tributary-epic',
  /** §1 "Client authentication": JWT client authentication (RS384, Tributary's client key). */
  auth: 'private_key_jwt' as SandboxAuth,
  /** §1 "`_since`, `Patient/$everything`": none. */
  everything: false,
  seed: 'epic',
  idPrefix: 'ep',
  patients: 3,
  years: 3,
  city: 'Seattle',
  state: 'WA',
  zip: '98104',
  vendor: 'epic',
  vendorLabel: 'Epic (simulated)',
  basePath: '/sandbox/epic/api/FHIR/R4',
  /** §1 "Access token": `expires_in: 3600`; "Refresh tokens": a new refresh_token each time (rotation). */
  accessTokenSeconds: 3600,
  refreshRotates: true,
  /** The types it serves (the registration asks patient/X.read for each). */
  types: [
    'Patient',
    'AllergyIntolerance',
    'Binary',
    'CarePlan',
    'CareTeam',
    'Condition',
    'Device',
    'DiagnosticReport',
    'DocumentReference',
    'Encounter',
    'Goal',
    'Immunization',
    'Location',
    'MedicationRequest',
    'Observation',
    'Organization',
    'Practitioner',
    'Procedure',
    'Coverage',
    'MedicationDispense',
    'QuestionnaireResponse',
    'ServiceRequest',
    'Specimen',
  ],
  /** What Epic's app grants a patient app: not Coverage, MedicationDispense, ServiceRequest, Specimen, QuestionnaireResponse (§1 "Refused types"). */
  grants: [
    'Patient',
    'AllergyIntolerance',
    'Binary',
    'CarePlan',
    'CareTeam',
    'Condition',
    'Device',
    'DiagnosticReport',
    'DocumentReference',
    'Encounter',
    'Goal',
    'Immunization',
    'Location',
    'MedicationRequest',
    'Observation',
    'Organization',
    'Practitioner',
    'Procedure',
  ],
  /** Notes as HTML Binaries linked by relative urls (§1 "DocumentReference / Binary"); social-history and survey Observations (§1 "Observation categories"). */
  generate: { vendor: { noteBinaries: ['text/html'] as ('text/html' | 'application/pdf')[], moreCategories: true } },
} as const;

/** §1 "Observation categories": Epic's list. */
export const EPIC_CATEGORIES = [
  'laboratory',
  'vital-signs',
  'social-history',
  'core-characteristics',
  'LDA',
  'LDA-property',
  'LDA-assessment',
  'functional-mental-status',
  'periodontal',
  'labor-delivery',
  'newborn-delivery',
  'obstetrics-gynecology',
  'survey',
  'sdoh',
  'imaging',
] as const;
/** The categories this sandbox's app is scoped for; the rest of the list → 400 suppressed (59204). */
export const EPIC_GRANTED_CATEGORIES = ['laboratory', 'vital-signs', 'social-history', 'survey'] as const;
/** §1 "CarePlan": the longitudinal category works; assess-plan is suppressed; others are invalid. */
export const EPIC_CAREPLAN_LONGITUDINAL = '38717003';
/** §1 "`_count`, paging": at most 100 a page here (Epic's maximum is unconfirmed; searches over 100 log 59133). */
export const EPIC_MAX_COUNT = 100;
/** How long a cached search (a `sessionID`) lives, by default. */
export const EPIC_SESSION_SECONDS = 300;

const EPIC_ERRORS = 'urn:oid:1.2.840.114350.1.13.0.1.7.2.657369';

/** An Epic OperationOutcome issue: its code, its Epic number, its words. */
function issue(
  severity: OperationOutcomeIssue['severity'],
  code: OperationOutcomeIssue['code'],
  epicCode: string,
  text: string,
  diagnostics?: string,
): OperationOutcomeIssue {
  return {
    severity,
    code,
    details: { coding: [{ system: EPIC_ERRORS, code: epicCode, display: text }], text },
    ...(diagnostics ? { diagnostics } : {}),
  };
}
const outcome = (...issues: OperationOutcomeIssue[]): OperationOutcome => ({ resourceType: 'OperationOutcome', issue: issues });
const refuse = (status: number, ...issues: OperationOutcomeIssue[]): FacadeAnswer => jsonAnswer(status, outcome(...issues));

/** §1 "Observation required params". */
export const EPIC_OBSERVATION_REQUIRED = () =>
  refuse(400, issue('error', 'required', '59108', 'Content invalid against the specification or a profile.', 'Must have either code or category.'));
const invalidCategory = (c: string) => refuse(400, issue('error', 'value', '59109', 'Invalid category', `Invalid category: ${c.slice(0, 64)}`));
const suppressedCategory = (c: string) =>
  refuse(
    400,
    issue(
      'warning',
      'suppressed',
      '59204',
      'The client is not authorized to access the requested category.',
      `Category ${c.slice(0, 64)} is not available to this client.`,
    ),
  );
/** §1 "`_count`, paging": an expired or unknown session. */
export const EPIC_SESSION_EXPIRED = () => refuse(400, issue('fatal', 'processing', '4113', 'Session ID for cached search results has expired.'));

/** A category value's code (`system|code` or `code`). */
const codeOf = (v: string) => (v.includes('|') ? v.slice(v.indexOf('|') + 1) : v);

/**
 * What Epic does with a search of `type`: refuse it (an answer), or search the store with `params`
 * and add `warnings` (OperationOutcome entries) to each page.
 */
export function epicSearch(
  type: string,
  query: URLSearchParams,
): { refused: FacadeAnswer } | { params: URLSearchParams; warnings: OperationOutcomeIssue[] } {
  const params = new URLSearchParams();
  const warnings: OperationOutcomeIssue[] = [];
  for (const [k, v] of query) {
    if (k.toLowerCase() === '_lastupdated') {
      // §1 "`_lastUpdated`": listed (as _lastupdated) on DocumentReference only; elsewhere an unknown parameter, ignored with a warning.
      if (type === 'DocumentReference') params.append('_lastUpdated', v);
      else
        warnings.push(issue('warning', 'informational', '4122', 'An unknown query parameter was ignored.', `unknown query parameter ${k} ignored`));
      continue;
    }
    if (k === '_count') {
      const n = Number(v);
      params.set('_count', String(Number.isInteger(n) && n > 0 ? Math.min(n, EPIC_MAX_COUNT) : EPIC_MAX_COUNT));
      continue;
    }
    params.append(k, v);
  }
  if (type === 'Patient') {
    // §1 "Patient search": refused; a client reads Patient/{id}. Which code Epic gives is not recorded: not-supported here.
    return {
      refused: refuse(
        400,
        issue(
          'error',
          'not-supported',
          '59100',
          'Patient search is not supported for this client.',
          'Patient search is not available with a patient token; read Patient/{id}.',
        ),
      ),
    };
  }
  if (type === 'Observation') {
    const categories = params
      .getAll('category')
      .flatMap((v) => v.split(','))
      .map(codeOf);
    if (!categories.length && !params.has('code')) return { refused: EPIC_OBSERVATION_REQUIRED() };
    for (const c of categories) {
      if (!(EPIC_CATEGORIES as readonly string[]).includes(c)) return { refused: invalidCategory(c) };
      if (!(EPIC_GRANTED_CATEGORIES as readonly string[]).includes(c)) return { refused: suppressedCategory(c) };
    }
  }
  if (type === 'CarePlan') {
    const categories = params
      .getAll('category')
      .flatMap((v) => v.split(','))
      .map(codeOf);
    // §1 "CarePlan": `CarePlan?patient=X` alone → 400 business-rule (59159).
    if (!categories.length)
      return { refused: refuse(400, issue('error', 'business-rule', '59159', 'A required parameter is missing.', 'Must have a category.')) };
    for (const c of categories) {
      if (c === 'assess-plan') return { refused: suppressedCategory(c) };
      if (c !== EPIC_CAREPLAN_LONGITUDINAL) return { refused: invalidCategory(c) };
    }
    // Every CarePlan of the sandbox is longitudinal.
    params.delete('category');
  }
  if (type === 'Condition') {
    // §1 "Sub-type suppression inside 200s".
    warnings.push(
      issue(
        'warning',
        'suppressed',
        '59204',
        'Some data was suppressed.',
        'Client not authorized for Condition - Encounter Diagnosis, Condition - Genomics. Search results of those types have been filtered out.',
      ),
    );
  }
  return { params, warnings };
}

/** §1 "`meta.lastUpdated`": absent on every resource (versionId with it). */
export function epicResource<T extends Resource>(r: T): T {
  const out = structuredClone(r);
  if (out.meta) {
    delete out.meta.lastUpdated;
    delete out.meta.versionId;
    if (!Object.keys(out.meta).length) delete out.meta;
  }
  return out;
}

/** §1 "DocumentReference / Binary": the first Binary of each patient (`…-bin-<n>-1`) is a sub-type this client may not read. */
export const epicBinaryRefused = (id: string): boolean => /-bin-\d+-1$/.test(id);

/** The CapabilityStatement's search parameters of a type: the store's, `_lastUpdated` only on DocumentReference (as `_lastupdated`). */
export const epicKeepsParam = (type: string, name: string): boolean => name.toLowerCase() !== '_lastupdated' || type === 'DocumentReference';

/** The IIS page Epic's web server answers for a type it does not route (§1 "Refused types"). */
export const IIS_404 = `<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/><title>404 - File or directory not found.</title></head>
<body><div id="header"><h1>Server Error</h1></div><div id="content"><div class="content-container"><fieldset>
<h2>404 - File or directory not found.</h2><h3>The resource you are looking for might have been removed, had its name changed, or is temporarily unavailable.</h3>
</fieldset></div></div></body></html>
`;

interface Session {
  type: string;
  /** The internal next link (relative to the internal base). */
  next: string;
  warnings: OperationOutcomeIssue[];
  expires: number;
}

/**
 * The Epic facade: `serve` answers one GET at the public base as Epic would, from the ordinary
 * routes. One per process: it keeps the cached searches (`sessionID`) for `sessionSeconds`.
 */
export function createEpicFacade(o: { sessionSeconds?: number } = {}): VendorFacade {
  const sessionMs = (o.sessionSeconds ?? EPIC_SESSION_SECONDS) * 1000;
  const sessions = new Map<string, Session>();
  const sweep = () => {
    const now = Date.now();
    for (const [id, s] of sessions) if (s.expires <= now) sessions.delete(id);
  };
  return {
    expirePages() {
      const n = sessions.size;
      sessions.clear();
      return n;
    },
    async serve(req: FacadeRequest, fhir: InternalFhir): Promise<FacadeAnswer> {
      const pass = (a: InternalAnswer) => passOn(a, fhir, req);
      const pub = <T>(r: T): T => publicOf(r, fhir, req);
      if (req.path === 'metadata') {
        const cs = await fhir.get('metadata');
        if (cs.status !== 200) return pass(cs);
        const listed = [...EPIC_SYSTEM.types, ...EPIC_UNSCOPED];
        const doc = capabilityFor(cs.body, epicKeepsParam, fhir.tokenEndpoint, listed) as {
          rest: { resource: { type: string; searchParam?: { name: string }[]; operation?: { name: string; definition: string }[] }[] }[];
        };
        for (const r of doc.rest[0]?.resource ?? []) {
          for (const p of r.searchParam ?? []) if (p.name === '_lastUpdated') p.name = '_lastupdated';
          // §1: Patient operations match and summary; no $everything.
          if (r.type === 'Patient')
            r.operation = [
              { name: 'match', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-match' },
              { name: 'summary', definition: 'http://hl7.org/fhir/uv/ips/OperationDefinition/summary' },
            ];
        }
        return jsonAnswer(200, pub(doc));
      }
      const segments = req.path.split('/');
      const type = segments[0];
      if ((EPIC_UNSCOPED as readonly string[]).includes(type)) return { status: 403, headers: {} };
      if ((EPIC_IIS_404 as readonly string[]).includes(type) || segments.length > 2)
        return { status: 404, headers: {}, contentType: 'text/html', body: IIS_404 };
      if (segments.length === 2) {
        if (type === 'Binary' && epicBinaryRefused(segments[1]))
          return refuse(403, issue('error', 'forbidden', '59203', 'The client is not authorized to access the requested resource sub-type.'));
        const read = await fhir.get(req.path);
        if (read.status !== 200) return pass(read);
        const resource = epicResource(pub(JSON.parse(read.body) as Resource));
        if (type === 'Binary') {
          // §1: Accept application/fhir+json (or json) → the FHIR Binary; the Binary's own type → its bytes.
          const b = resource as Binary;
          const accept = (req.accept ?? '').toLowerCase();
          if (accept && !accept.includes('json') && b.contentType && (accept.includes(b.contentType.toLowerCase()) || accept.includes('*/*'))) {
            return { status: 200, headers: {}, contentType: b.contentType, bytes: Buffer.from(b.data ?? '', 'base64') };
          }
        }
        return jsonAnswer(200, resource);
      }
      let internalPath: string;
      let warnings: OperationOutcomeIssue[];
      const sessionId = req.query.get('sessionID');
      if (sessionId !== null) {
        sweep();
        const s = sessions.get(sessionId);
        if (!s || s.type !== type) return EPIC_SESSION_EXPIRED();
        internalPath = s.next;
        warnings = s.warnings;
      } else {
        const rules = epicSearch(type, req.query);
        if ('refused' in rules) return rules.refused;
        internalPath = `${type}?${rules.params}`;
        warnings = rules.warnings;
      }
      const page = await fhir.get(internalPath);
      if (page.status !== 200) return pass(page);
      const bundle = JSON.parse(page.body) as Bundle;
      const matches = (bundle.entry ?? []).filter((e) => e.resource && e.resource.resourceType !== 'OperationOutcome');
      const entries: BundleEntry[] = matches.map((e) => ({
        fullUrl: `${req.base}/${e.resource!.resourceType}/${e.resource!.id}`,
        resource: epicResource(pub(e.resource!)),
        search: e.search ?? { mode: 'match' },
      }));
      if (warnings.length) entries.push({ fullUrl: `urn:uuid:${randomUUID()}`, resource: outcome(...warnings), search: { mode: 'outcome' } });
      const links = [{ relation: 'self', url: `${req.base}/${req.path}?${req.query}` }];
      const internalNext = bundle.link?.find((l) => l.relation === 'next')?.url;
      if (internalNext?.startsWith(`${fhir.internalBase}/`)) {
        sweep();
        const id = `${randomBytes(2).toString('hex').toUpperCase()}-${randomBytes(16).toString('hex').toUpperCase()}`;
        sessions.set(id, { type, next: internalNext.slice(fhir.internalBase.length + 1), warnings, expires: Date.now() + sessionMs });
        links.push({ relation: 'next', url: `${req.base}/${type}?sessionID=${id}` });
      }
      // §1 "`Bundle.total`": Epic sets total to the page's count.
      return jsonAnswer(200, { resourceType: 'Bundle', type: 'searchset', total: matches.length, link: links, entry: entries } satisfies Bundle);
    },
  };
}
