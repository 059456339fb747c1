/**
 * The Blue Button profile: a payer's FHIR API as CMS Blue Button 2.0 serves it (ehr-behaviour.md
 * §9). Only three types, each with its own few parameters; Coverage by `beneficiary`, not
 * `patient`; the beneficiary injected by the server whatever the request names; unknown parameters
 * dropped; `_count` 10 by default and more than 50 refused; offset paging by `startIndex`.
 *
 * This file holds the rules as functions of the request and the records (no HTTP): the facade asks
 * `bluebuttonSearch` what to do with a search, fetches the records it names from the ordinary FHIR
 * routes, and answers `bluebuttonPage` of them.
 */
import type { Bundle, BundleLink, ExplanationOfBenefit, OperationOutcome, Resource } from '@medplum/fhirtypes';
import { generatePayerSystem } from '../payer.ts';
import type { GeneratedSystem, GenerateOptions } from '../generate.ts';
import type { SandboxAuth } from '../systems.ts';
import {
  capabilityFor,
  toPublic,
  type FacadeAnswer,
  type FacadeRequest,
  type InternalFhir,
  type VendorAnswer,
  passOn,
  type InternalAnswer,
} from './facade.ts';

export type { VendorAnswer } from './facade.ts';

/** The SandboxDefinition fields of the Blue Button sandbox (its directory entry, its app, its records). */
export const BLUEBUTTON_SYSTEM = {
  name: 'bluebutton',
  title: 'Medicare (CMS Blue Button-like sandbox)',
  directoryId: 'sandbox-bluebutton',
  clientId: 'tributary-bluebutton',
  auth: 'client_secret_basic' as SandboxAuth,
  everything: false,
  seed: 'bluebutton',
  idPrefix: 'bb',
  patients: 3,
  years: 3,
  city: 'Baltimore',
  state: 'MD',
  zip: '21244',
  vendor: 'bluebutton',
  /** Shown in the directory's vendor column. */
  vendorLabel: 'CMS Blue Button (simulated)',
  /** The public FHIR base, under BASE_URL. */
  basePath: '/sandbox/bluebutton/v2/fhir',
  /** Access tokens live an hour; refresh tokens rotate (§9 "Access token", "Refresh"). */
  accessTokenSeconds: 3600,
  refreshRotates: true,
  /** The types it serves, for the registration's v1 per-type scopes (patient/X.read). */
  types: ['Patient', 'Coverage', 'ExplanationOfBenefit'],
  /** Its records: the payer's view of the seed's patients (src/sandbox/payer.ts), not clinical ones. */
  records: (o: GenerateOptions): GeneratedSystem => generatePayerSystem(o),
} as const;

/**
 * The search parameters of each type, as Blue Button's metadata lists them; nothing else is served.
 * ehr-behaviour.md §9 "Resources / params".
 */
export const BLUEBUTTON_SEARCH: Readonly<Record<string, readonly string[]>> = {
  Patient: ['_id', 'identifier'],
  Coverage: ['beneficiary'],
  ExplanationOfBenefit: ['patient', 'type', 'service-date', '_lastUpdated'],
};

/** §9 "`_count`, paging": default 10, at most 50. */
export const BLUEBUTTON_COUNT = { default: 10, max: 50 } as const;

export interface BlueButtonQuery {
  type: string;
  /** The query for the ordinary FHIR routes: the beneficiary's own records of the type (with `_lastUpdated` where asked). */
  internal: URLSearchParams;
  /** Filters Blue Button applies that the store has no parameter for (CARIN BB's `type` and `service-date`). */
  eobType: string[];
  serviceDate: string[];
  count: number;
  startIndex: number;
  /** The parameters the page links repeat (those Blue Button kept; unknown ones dropped). */
  kept: URLSearchParams;
}

const outcome = (status: number, code: 'invalid', diagnostics: string): VendorAnswer => ({
  status,
  contentType: 'application/fhir+json',
  body: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] } satisfies OperationOutcome,
});

/** Blue Button answers a type it does not serve as its web framework does: 404 `{"detail": "Not found."}`. */
export const BLUEBUTTON_NOT_FOUND: VendorAnswer = { status: 404, contentType: 'application/json', body: { detail: 'Not found.' } };

const PREFIXED = /^(lt|le|gt|ge)\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;
const DATE = /^(eq|ne|lt|le|gt|ge|sa|eb|ap)?\d{4}(-\d{2}(-\d{2})?)?/;

/**
 * What Blue Button does with a search of `type`: refuse it (an answer to send), or the query to
 * fetch and the page to give. `patientId` is the token's beneficiary, which Blue Button injects
 * itself (a `patient` or `beneficiary` naming someone else changes nothing). See §9.
 */
export function bluebuttonSearch(type: string, params: URLSearchParams, patientId: string): { refused: VendorAnswer } | { query: BlueButtonQuery } {
  const allowed = BLUEBUTTON_SEARCH[type];
  if (!allowed) return { refused: BLUEBUTTON_NOT_FOUND };
  const countRaw = params.get('_count');
  const count = countRaw === null ? BLUEBUTTON_COUNT.default : Number(countRaw);
  if (!/^\d+$/.test(countRaw ?? '0') || count < 1)
    return {
      refused: outcome(400, 'invalid', `_count must be a whole number from 1 to ${BLUEBUTTON_COUNT.max}, got ${String(countRaw).slice(0, 20)}.`),
    };
  // §9: "_count … max 50 (>50 fails schema → 400)".
  if (count > BLUEBUTTON_COUNT.max)
    return { refused: outcome(400, 'invalid', `Ensure this value is less than or equal to ${BLUEBUTTON_COUNT.max}. (_count)`) };
  const startRaw = params.get('startIndex') ?? '0';
  if (!/^\d{1,9}$/.test(startRaw))
    return { refused: outcome(400, 'invalid', `startIndex must be a whole number of 0 or more, got ${startRaw.slice(0, 20)}.`) };
  const kept = new URLSearchParams();
  for (const [k, v] of params) if (allowed.includes(k)) kept.append(k, v); // §9 "Unknown params": silently dropped
  // §9 "_lastUpdated": the value must start with lt, le, gt or ge, else 400.
  for (const v of kept.getAll('_lastUpdated')) {
    if (!PREFIXED.test(v))
      return { refused: outcome(400, 'invalid', `_lastUpdated must start with lt, le, gt or ge and be a date or instant, got ${v.slice(0, 40)}.`) };
  }
  for (const v of kept.getAll('service-date')) {
    if (!DATE.test(v)) return { refused: outcome(400, 'invalid', `service-date must be a date with an optional prefix, got ${v.slice(0, 40)}.`) };
  }
  const internal = new URLSearchParams();
  if (type === 'Patient') internal.set('_id', patientId);
  if (type === 'Coverage') internal.set('beneficiary', `Patient/${patientId}`);
  if (type === 'ExplanationOfBenefit') {
    internal.set('patient', `Patient/${patientId}`);
    for (const v of kept.getAll('_lastUpdated')) internal.append('_lastUpdated', v);
  }
  if (type === 'Patient' && kept.has('_id') && kept.getAll('_id').some((id) => !id.split(',').includes(patientId)))
    internal.set('_id', `${patientId}-none`);
  return {
    query: { type, internal, eobType: kept.getAll('type'), serviceDate: kept.getAll('service-date'), count, startIndex: Number(startRaw), kept },
  };
}

/** Whether one `service-date` value (a prefix and a date) matches a claim's billable period or service dates. */
export function matchesServiceDate(eob: ExplanationOfBenefit, value: string): boolean {
  const m = /^(eq|ne|lt|le|gt|ge|sa|eb|ap)?(.+)$/.exec(value)!;
  const prefix = m[1] ?? 'eq';
  const day = m[2].slice(0, 10);
  const dates = [eob.billablePeriod?.start, eob.billablePeriod?.end, ...(eob.item ?? []).map((i) => i.servicedDate)]
    .filter((d): d is string => !!d)
    .map((d) => d.slice(0, 10));
  const test = (d: string) => {
    const pad = d.slice(0, day.length);
    switch (prefix) {
      case 'lt':
      case 'eb':
        return pad < day;
      case 'le':
        return pad <= day;
      case 'gt':
      case 'sa':
        return pad > day;
      case 'ge':
        return pad >= day;
      case 'ne':
        return pad !== day;
      default:
        return pad === day;
    }
  };
  return dates.some(test);
}

/** Whether a claim is of one of the `type` values (`code` or `system|code`, comma-separated alternatives). */
function matchesType(eob: ExplanationOfBenefit, values: string[]): boolean {
  return values.every((v) =>
    v.split(',').some((alt) => {
      const [system, code] = alt.includes('|') ? alt.split('|', 2) : [undefined, alt];
      return (eob.type.coding ?? []).some((c) => c.code === code && (system === undefined || c.system === system));
    }),
  );
}

/**
 * The page Blue Button answers: the records the query matched (all of them, fetched by the
 * facade) filtered as Blue Button filters, `count` of them from `startIndex`, with first,
 * previous, next and last links in `startIndex` (§9 "`_count`, paging"). `url` is the public URL
 * of the type's search, without a query.
 */
export function bluebuttonPage(matched: Resource[], q: BlueButtonQuery, url: string): Bundle {
  const rows = matched.filter(
    (r) =>
      r.resourceType !== 'ExplanationOfBenefit' ||
      (matchesType(r as ExplanationOfBenefit, q.eobType) && q.serviceDate.every((v) => matchesServiceDate(r as ExplanationOfBenefit, v))),
  );
  const link = (relation: string, startIndex: number): BundleLink => {
    const p = new URLSearchParams(q.kept);
    p.set('_count', String(q.count));
    p.set('startIndex', String(startIndex));
    return { relation, url: `${url}?${p}` };
  };
  const last = rows.length === 0 ? 0 : Math.floor((rows.length - 1) / q.count) * q.count;
  const links = [link('first', 0)];
  if (q.startIndex > 0) links.push(link('previous', Math.max(0, q.startIndex - q.count)));
  if (q.startIndex + q.count < rows.length) links.push(link('next', q.startIndex + q.count));
  links.push(link('last', last), link('self', q.startIndex));
  const base = url.slice(0, url.length - q.type.length - 1);
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    total: rows.length,
    link: links,
    entry: rows
      .slice(q.startIndex, q.startIndex + q.count)
      .map((resource) => ({ fullUrl: `${base}/${resource.resourceType}/${resource.id}`, resource })),
  };
}

/** The CapabilityStatement's rest.resource list (§9 "Resources / params"; no operations). */
export function bluebuttonCapabilityResources(): { type: string; interaction: { code: string }[]; searchParam: { name: string; type: string }[] }[] {
  const kinds: Record<string, string> = {
    _id: 'token',
    identifier: 'token',
    beneficiary: 'reference',
    patient: 'reference',
    type: 'token',
    'service-date': 'date',
    _lastUpdated: 'date',
  };
  return Object.entries(BLUEBUTTON_SEARCH).map(([type, names]) => ({
    type,
    interaction: [{ code: 'read' }, { code: 'search-type' }],
    searchParam: names.map((name) => ({ name, type: kinds[name] })),
  }));
}

// ---------------------------------------------------------------------------------------------
// The facade: Blue Button's answers around the ordinary FHIR routes

const asAnswer = (a: VendorAnswer): FacadeAnswer => ({
  status: a.status,
  headers: {},
  contentType: a.contentType,
  body: a.body === undefined ? undefined : JSON.stringify(a.body),
});

/**
 * The Blue Button facade: `serve` answers one GET at the public base as Blue Button would, from
 * the ordinary routes (which reach the token's beneficiary's records only). Stateless: offset
 * pages need no memory.
 */
export function createBlueButtonFacade() {
  return {
    expirePages: () => 0,
    async serve(req: FacadeRequest, fhir: InternalFhir): Promise<FacadeAnswer> {
      const pass = (a: InternalAnswer) => passOn(a, fhir, req);
      if (req.path === 'metadata') {
        const cs = await fhir.get('metadata');
        if (cs.status !== 200) return pass(cs);
        const doc = capabilityFor(cs.body, () => true, fhir.tokenEndpoint) as { rest: { resource: unknown[] }[] };
        doc.rest[0].resource = bluebuttonCapabilityResources();
        return { status: 200, headers: {}, contentType: 'application/fhir+json', body: toPublic(JSON.stringify(doc), fhir.internalBase, req.base) };
      }
      const segments = req.path.split('/');
      if (!BLUEBUTTON_SEARCH[segments[0]] || segments.length > 2) return asAnswer(BLUEBUTTON_NOT_FOUND);
      if (segments.length === 2) return pass(await fhir.get(req.path));
      // The token's beneficiary: the one Patient the ordinary routes show this token.
      const me = await fhir.get('Patient?_count=1&_elements=id');
      if (me.status !== 200) return pass(me);
      const patientId = (JSON.parse(me.body) as Bundle).entry?.[0]?.resource?.id ?? '';
      const rules = bluebuttonSearch(segments[0], req.query, patientId);
      if ('refused' in rules) return asAnswer(rules.refused);
      const matched: Resource[] = [];
      for (let next: string | undefined = `${segments[0]}?${rules.query.internal}&_count=1000`; next;) {
        const page = await fhir.get(next);
        if (page.status !== 200) return pass(page);
        const b = JSON.parse(page.body) as Bundle;
        matched.push(...(b.entry ?? []).flatMap((e) => (e.resource && e.resource.resourceType === segments[0] ? [e.resource] : [])));
        const link = b.link?.find((l) => l.relation === 'next')?.url;
        next = link?.startsWith(`${fhir.internalBase}/`) ? link.slice(fhir.internalBase.length + 1) : undefined;
      }
      const bundle = bluebuttonPage(
        JSON.parse(toPublic(JSON.stringify(matched), fhir.internalBase, req.base)),
        rules.query,
        `${req.base}/${segments[0]}`,
      );
      return { status: 200, headers: {}, contentType: 'application/fhir+json', body: JSON.stringify(bundle) };
    },
  };
}
