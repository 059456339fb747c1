/**
 * The eClinicalWorks profile: the healow patient facade as its CapabilityStatement, recorded
 * traffic and published limits show it (ehr-behaviour.md §5). A HAPI-style server: Observation,
 * CarePlan and CareTeam answer only their declared parameter combinations; 250 calls a minute per
 * practice (this base), token calls included, then 429 without Retry-After until the top of the
 * minute; `_lastUpdated` on no resource; `page` paging; the self link in http:// whatever the
 * base; meta.lastUpdated present.
 *
 * The rules are functions of the request; `createEcwFacade` applies them around the ordinary FHIR
 * routes (src/sandbox/vendors/facade.ts).
 */
import type { Bundle, OperationOutcome } from '@medplum/fhirtypes';
import type { SandboxAuth } from '../systems.ts';
import {
  capabilityFor,
  jsonAnswer,
  PageTokens,
  queryKey,
  toPublic,
  type FacadeAnswer,
  type FacadeRequest,
  type InternalFhir,
  type VendorFacade,
  passOn,
  type InternalAnswer,
} from './facade.ts';

/** §5 "Rate limits": 250 calls a minute per base URL (practice code), FHIR and token calls counted. */
export const ECW_CALLS_PER_MINUTE = 250;

/** The SandboxDefinition fields of the eClinicalWorks sandbox (its directory entry, its app, its records). */
export const ECW_SYSTEM = {
  name: 'ecw',
  title: 'Maple Street Clinic (eClinicalWorks-like sandbox)',
  directoryId: 'sandbox-ecw',
  clientId: 'tributary-ecw',
  /** §5 "OAuth": asymmetric client authentication, RS384 only (Tributary's key is RS384); PKCE mandatory (every sign-in here takes it). */
  auth: 'private_key_jwt' as SandboxAuth,
  everything: false,
  seed: 'ecw',
  idPrefix: 'ec',
  patients: 3,
  years: 3,
  city: 'Springfield',
  state: 'IL',
  zip: '62701',
  vendor: 'ecw',
  vendorLabel: 'eClinicalWorks (simulated)',
  /** §5 "Base URL": tenant-scoped, `/fhir/r4/{6-char practice code}`. */
  basePath: '/sandbox/ecw/fhir/r4/FFBJCD',
  /** §5 "OAuth": access token 3600 s; refresh single-use (rotates). */
  accessTokenSeconds: 3600,
  refreshRotates: true,
  rateLimitPerMinute: ECW_CALLS_PER_MINUTE,
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
  ],
} as const;

/** §5 "Required params": the declared combinations (besides `_count` and `page`): the partner `patient` needs. */
export const ECW_REQUIRED_PARTNER: Readonly<Record<string, string>> = { Observation: 'category', CarePlan: 'category', CareTeam: 'status' };

const PAGE = 'page';

/** A HAPI-style refusal of an undeclared parameter combination (§5 "Required params"), naming the parameters as given. */
export function ecwCombinationRefused(type: string, params: URLSearchParams): FacadeAnswer | undefined {
  const partner = ECW_REQUIRED_PARTNER[type];
  if (!partner || params.has(partner) || params.has('_id')) return undefined;
  const names = [...new Set([...params.keys()].filter((k) => k !== PAGE))];
  return jsonAnswer(400, {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity: 'error',
        code: 'processing',
        diagnostics: `Invalid request: Does not know how to handle get operation with parameter [${names.join(',')}]`,
      },
    ],
  } satisfies OperationOutcome);
}

/** The per-minute limit of one practice: a call counted, or refused (over the limit until the minute ends). */
export class MinuteLimit {
  private minute = -1;
  private calls = 0;
  private readonly limit: number;
  constructor(limit: number) {
    this.limit = limit;
  }
  /** Counts a call; false when it is over the limit (and so is every call until the top of the minute). */
  take(now = Date.now()): boolean {
    const minute = Math.floor(now / 60_000);
    if (minute !== this.minute) [this.minute, this.calls] = [minute, 0];
    this.calls++;
    return this.calls <= this.limit;
  }
}

/** §5 "Rate limits": 429 and no Retry-After or RateLimit headers. */
const THROTTLED = (): FacadeAnswer =>
  jsonAnswer(429, {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code: 'throttled', diagnostics: 'Too many requests: the limit of this practice is 250 calls a minute.' }],
  });

/**
 * The eClinicalWorks facade: `serve` answers one GET at the public base as eCW would; token calls
 * count against the same limit (`tokenCall`). One per process (the limit is this process's).
 */
export function createEcwFacade(o: { perMinute?: number } = {}): VendorFacade {
  const limit = new MinuteLimit(o.perMinute ?? ECW_CALLS_PER_MINUTE);
  const pages = new PageTokens();
  return {
    expirePages: () => pages.clear(),
    tokenCall: () => (limit.take() ? undefined : THROTTLED()),
    async serve(req: FacadeRequest, fhir: InternalFhir): Promise<FacadeAnswer> {
      if (!limit.take()) return THROTTLED();
      const pass = (a: InternalAnswer) => passOn(a, fhir, req);
      if (req.path === 'metadata') {
        const cs = await fhir.get('metadata');
        // §5 "`_lastUpdated` / `_since`": on no resource.
        return cs.status === 200
          ? jsonAnswer(
              200,
              capabilityFor(cs.body, (_t, name) => name.toLowerCase() !== '_lastupdated', fhir.tokenEndpoint, ECW_SYSTEM.types),
            )
          : pass(cs);
      }
      const segments = req.path.split('/');
      if (segments.length > 1) return pass(await fhir.get(req.path));
      const type = segments[0];
      const page = req.query.get(PAGE);
      const rest = new URLSearchParams([...req.query].filter(([k]) => k !== PAGE && k.toLowerCase() !== '_lastupdated'));
      const refused = ecwCombinationRefused(type, new URLSearchParams([...req.query].filter(([k]) => k !== PAGE)));
      if (refused) return refused;
      const key = queryKey(type, rest, PAGE);
      let internalPath = `${type}?${rest}`;
      const n = page === null ? 1 : Number(page);
      if (page !== null && n !== 1) {
        const next = pages.get(`${key}#${n}`);
        if (!next)
          return jsonAnswer(400, {
            resourceType: 'OperationOutcome',
            issue: [
              {
                severity: 'error',
                code: 'processing',
                diagnostics: `Invalid request: page ${String(page).slice(0, 20)} is not known for this search.`,
              },
            ],
          });
        internalPath = next;
      }
      const answer = await fhir.get(internalPath);
      if (answer.status !== 200) return pass(answer);
      const bundle = JSON.parse(toPublic(answer.body, fhir.internalBase, req.base)) as Bundle;
      const internalNext = (JSON.parse(answer.body) as Bundle).link?.find((l) => l.relation === 'next')?.url;
      // §5 "Paging": the self link in http:// even when the base is https.
      bundle.link = [{ relation: 'self', url: `${req.base.replace(/^https:/, 'http:')}/${type}?${req.query}` }];
      if (internalNext?.startsWith(`${fhir.internalBase}/`)) {
        pages.set(`${key}#${n + 1}`, internalNext.slice(fhir.internalBase.length + 1));
        const p = new URLSearchParams(rest);
        p.set(PAGE, String(n + 1));
        bundle.link.push({ relation: 'next', url: `${req.base}/${type}?${p}` });
      }
      return jsonAnswer(200, bundle);
    },
  };
}
