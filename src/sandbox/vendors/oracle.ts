/**
 * The Oracle Health (Cerner Millennium) profile: its R4 patient-access API as its documentation
 * and examples show it (ehr-behaviour.md §2). CarePlan needs the `assess-plan` category;
 * `_lastUpdated` on some types only, with per-type rules (MedicationRequest le/ge with a time,
 * Immunization one gt/ge value, never with `date`); `_count` clamped per type, every
 * social-history Observation on page 1; opaque `-pageContext` paging; meta.lastUpdated with
 * versionId except on DiagnosticReport; a whole Procedure search fails with a 500 when a page
 * would hold a Procedure without status; entered-in-error Observations masked; Binary only as
 * FHIR JSON or its own content type (406 otherwise). Access tokens live 570 s and a refresh gives
 * the same refresh token back (the app's refresh_rotates is false).
 *
 * The rules are functions of the request and the records; `createOracleFacade` applies them
 * around the ordinary FHIR routes (src/sandbox/vendors/facade.ts).
 */
import { randomBytes } from 'node:crypto';
import type { Binary, Bundle, BundleEntry, OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { SandboxAuth } from '../systems.ts';
import {
  capabilityFor,
  jsonAnswer,
  PageTokens,
  queryKey,
  type FacadeAnswer,
  type FacadeRequest,
  type InternalFhir,
  type VendorFacade,
  passOn,
  type InternalAnswer,
  publicOf,
} from './facade.ts';

/** The SandboxDefinition fields of the Oracle Health sandbox (its directory entry, its app, its records). */
export const ORACLE_SYSTEM = {
  name: 'oracle',
  title: 'Cascade Regional (Oracle Health-like sandbox)',
  directoryId: 'sandbox-oracle',
  clientId: 'tributary-oracle',
  /** §2 "Client auth": client_secret_basic among those listed. */
  auth: 'client_secret_basic' as SandboxAuth,
  /** §2 "`_since`, `$everything`": no Patient/$everything. */
  everything: false,
  seed: 'oracle',
  idPrefix: 'or',
  patients: 3,
  years: 3,
  city: 'Kansas City',
  state: 'MO',
  zip: '64105',
  vendor: 'oracle',
  vendorLabel: 'Oracle Health (simulated)',
  /** Tenant-scoped, as Oracle's `…/r4/{tenant id}`. */
  basePath: '/sandbox/oracle/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d',
  /** §2 "Access token": 570 s. "Refresh tokens": the refresh response does not return a new refresh token. */
  accessTokenSeconds: 570,
  refreshRotates: false,
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
    'MedicationRequest',
    'Observation',
    'Procedure',
    'Practitioner',
    'Organization',
    'Location',
  ],
  /**
   * §2 "Entered-in-error": some Observations entered-in-error with values masked; "Binary / notes":
   * HTML and PDF renditions; "`_count`": social-history Observations; "Whole-search failure": one
   * Procedure without status.
   */
  generate: {
    vendor: {
      enteredInError: { Observation: 0.05 },
      maskEnteredInError: true,
      noteBinaries: ['text/html', 'application/pdf'] as ('text/html' | 'application/pdf')[],
      moreCategories: true,
      procedureWithoutStatus: true,
    },
  },
} as const;

/** §2 "`_lastUpdated`": the types that list it; elsewhere it is ignored. */
export const ORACLE_LASTUPDATED = [
  'AllergyIntolerance',
  'Condition',
  'DiagnosticReport',
  'DocumentReference',
  'Encounter',
  'Immunization',
  'MedicationRequest',
  'Observation',
  'Procedure',
] as const;
/** §2 "`_lastUpdated`": `date` and `_lastUpdated` may not be combined on these. */
const NO_DATE_WITH_LASTUPDATED = ['Observation', 'DiagnosticReport', 'DocumentReference', 'Procedure', 'Immunization'];
/** §2 "`_count`": per type default and maximum (larger asks clamped). */
export const ORACLE_COUNT: Readonly<Record<string, { default: number; max: number }>> = {
  Observation: { default: 50, max: 200 },
  DocumentReference: { default: 10, max: 100 },
  DiagnosticReport: { default: 10, max: 100 },
  Patient: { default: 20, max: 100 },
};
const OTHER_COUNT = { default: 50, max: 200 };

const invalid = (diagnostics: string): FacadeAnswer =>
  jsonAnswer(400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', diagnostics }] } satisfies OperationOutcome);
const SOCIAL = 'social-history';

/** What Oracle does with a search of `type`: refuse it, or the store's parameters. */
export function oracleSearch(type: string, query: URLSearchParams): { refused: FacadeAnswer } | { params: URLSearchParams } {
  const params = new URLSearchParams();
  const lastUpdated: string[] = [];
  for (const [k, v] of query) {
    if (k === '_lastUpdated') lastUpdated.push(v);
    else if (k !== '_count') params.append(k, v);
  }
  if (type === 'CarePlan') {
    // §2 "Required params": CarePlan needs category, and only assess-plan is supported.
    const c = params.getAll('category').flatMap((v) => v.split(','));
    if (!c.length) return { refused: invalid('The category parameter is required for CarePlan.') };
    if (c.some((v) => v.replace(/^.*\|/, '') !== 'assess-plan'))
      return { refused: invalid('Only the assess-plan category is supported for CarePlan.') };
    params.delete('category'); // every CarePlan of the sandbox is an assessment and plan
  }
  if (lastUpdated.length && (ORACLE_LASTUPDATED as readonly string[]).includes(type)) {
    if (params.has('date') && NO_DATE_WITH_LASTUPDATED.includes(type)) return { refused: invalid('date and _lastUpdated may not be combined.') };
    if (type === 'MedicationRequest' && lastUpdated.some((v) => !/^(le|ge)\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(v))) {
      return { refused: invalid('_lastUpdated for MedicationRequest takes only the le and ge prefixes, with a time component.') };
    }
    if (type === 'Immunization' && (lastUpdated.length > 1 || !/^(gt|ge)/.test(lastUpdated[0])))
      return { refused: invalid('_lastUpdated for Immunization takes one value, with the gt or ge prefix.') };
    for (const v of lastUpdated) params.append('_lastUpdated', v);
  }
  const limits = ORACLE_COUNT[type] ?? OTHER_COUNT;
  const asked = Number(query.get('_count'));
  params.set('_count', String(query.has('_count') && Number.isInteger(asked) && asked > 0 ? Math.min(asked, limits.max) : limits.default));
  return { params };
}

/** §2 "`meta.lastUpdated`": present with versionId, except on DiagnosticReport. */
export function oracleResource<T extends Resource>(r: T): T {
  if (r.resourceType !== 'DiagnosticReport' || !r.meta) return r;
  const out = structuredClone(r);
  delete out.meta!.lastUpdated;
  delete out.meta!.versionId;
  if (!Object.keys(out.meta!).length) delete out.meta;
  return out;
}

const isSocial = (r: Resource) =>
  r.resourceType === 'Observation' && JSON.stringify((r as { category?: unknown }).category ?? []).includes(`"${SOCIAL}"`);

/**
 * The Oracle facade: `serve` answers one GET at the public base as Oracle would, from the
 * ordinary routes. One per process (it remembers page contexts).
 */
export function createOracleFacade(): VendorFacade {
  const pages = new PageTokens();
  return {
    expirePages: () => pages.clear(),
    async serve(req: FacadeRequest, fhir: InternalFhir): Promise<FacadeAnswer> {
      const pass = (a: InternalAnswer) => passOn(a, fhir, req);
      const pub = <T>(r: T): T => publicOf(r, fhir, req);
      if (req.path === 'metadata') {
        const cs = await fhir.get('metadata');
        if (cs.status !== 200) return pass(cs);
        return jsonAnswer(
          200,
          pub(
            capabilityFor(
              cs.body,
              (type, name) => name !== '_lastUpdated' || (ORACLE_LASTUPDATED as readonly string[]).includes(type),
              fhir.tokenEndpoint,
              ORACLE_SYSTEM.types,
            ),
          ),
        );
      }
      const segments = req.path.split('/');
      const type = segments[0];
      if (segments.length > 1) {
        if (type === 'Binary' && segments.length === 2) {
          // §2 "Binary / notes": Accept application/fhir+json or the attachment's own type; application/json and others → 406.
          const accept = (req.accept ?? 'application/fhir+json').toLowerCase();
          const read = await fhir.get(req.path);
          if (read.status !== 200) return pass(read);
          const b = JSON.parse(read.body) as Binary;
          if (accept.includes('application/fhir+json')) return jsonAnswer(200, pub(b));
          if (b.contentType && accept.includes(b.contentType.toLowerCase()))
            return { status: 200, headers: {}, contentType: b.contentType, bytes: Buffer.from(b.data ?? '', 'base64') };
          return jsonAnswer(406, {
            resourceType: 'OperationOutcome',
            issue: [
              {
                severity: 'error',
                code: 'not-supported',
                diagnostics: `Accept must be application/fhir+json or ${b.contentType ?? 'the content type of the attachment'}.`,
              },
            ],
          });
        }
        const read = await fhir.get(req.path);
        return read.status === 200 ? jsonAnswer(200, oracleResource(pub(JSON.parse(read.body) as Resource))) : pass(read);
      }
      const context = req.query.get('-pageContext');
      const rest = new URLSearchParams([...req.query].filter(([k]) => k !== '-pageContext' && k !== '-pageDirection'));
      let internalPath: string;
      const first = context === null;
      let socialFirst = false;
      if (!first) {
        const next = pages.get(`${queryKey(type, rest, '-pageContext')}#${context}`);
        if (!next) return invalid('The page context is not known or has expired; start the search again.');
        internalPath = next;
        socialFirst = type === 'Observation' && !rest.has('category') && !rest.has('code');
      } else {
        const rules = oracleSearch(type, rest);
        if ('refused' in rules) return rules.refused;
        internalPath = `${type}?${rules.params}`;
        socialFirst = type === 'Observation' && !rules.params.has('category') && !rules.params.has('code');
      }
      const page = await fhir.get(internalPath);
      if (page.status !== 200) return pass(page);
      const bundle = JSON.parse(page.body) as Bundle;
      let resources: Resource[] = (bundle.entry ?? []).map((e) => e.resource!).filter((r) => r && r.resourceType !== 'OperationOutcome');
      if (socialFirst) {
        // §2 "`_count`": every social-history Observation on page 1, whatever `_count`; later pages without them (smaller than asked).
        resources = resources.filter((r) => !isSocial(r));
        if (first) {
          const q = new URLSearchParams([...new URLSearchParams(internalPath.slice(internalPath.indexOf('?') + 1))].filter(([k]) => k !== '_count'));
          q.set('category', SOCIAL);
          q.set('_count', '1000');
          const social = await fhir.get(`Observation?${q}`);
          if (social.status !== 200) return pass(social);
          resources = [...((JSON.parse(social.body) as Bundle).entry ?? []).map((e) => e.resource!), ...resources];
        }
      }
      // §2 "Whole-search failure": a resource missing a required field fails the whole search.
      if (type === 'Procedure' && resources.some((r) => !(r as { status?: string }).status)) {
        return jsonAnswer(500, {
          resourceType: 'OperationOutcome',
          issue: [{ severity: 'fatal', code: 'required', diagnostics: 'Procedure.status: minimum required = 1, but only found 0' }],
        } satisfies OperationOutcome);
      }
      const entries: BundleEntry[] = resources.map((r) => ({
        fullUrl: `${req.base}/${r.resourceType}/${r.id}`,
        resource: oracleResource(pub(r)),
        search: { mode: 'match' },
      }));
      const links = [{ relation: 'self', url: `${req.base}/${type}?${req.query}` }];
      const internalNext = bundle.link?.find((l) => l.relation === 'next')?.url;
      if (internalNext?.startsWith(`${fhir.internalBase}/`)) {
        const id = randomBytes(18).toString('base64url');
        pages.set(`${queryKey(type, rest, '-pageContext')}#${id}`, internalNext.slice(fhir.internalBase.length + 1));
        const p = new URLSearchParams(rest);
        p.set('-pageContext', id);
        p.set('-pageDirection', 'NEXT');
        links.push({ relation: 'next', url: `${req.base}/${type}?${p}` });
      }
      return jsonAnswer(200, { resourceType: 'Bundle', type: 'searchset', link: links, entry: entries } satisfies Bundle);
    },
  };
}
