/**
 * What to ask a system for one patient, and what the sync learned about asking it:
 * - the types: the US Core and payer types its CapabilityStatement lists with a patient parameter
 *   (`patient`, else `subject`, else `beneficiary`: Blue Button's Coverage), in an order in which
 *   referenced targets mostly come first; the whole list when it lists no resources at all;
 * - whether it lists `_lastUpdated` for a type (the name as listed: Epic writes `_lastupdated`),
 *   and whether it serves Patient/$everything;
 * - which of them the token's granted scopes allow (v1 `patient/X.read`, v2 `patient/X.rs`,
 *   wildcards; `user/` scopes too);
 * - the variants of a search refused for a missing parameter (category fan-out, `intent`, `status`);
 * - what was learned per system (table trb_sync_query_plan, migration 0019): the variants that work
 *   and those refused, the `_lastUpdated` prefix that works, the page size, whether `_since` on
 *   $everything is honoured; forgotten after LEARN_DAYS, so a system that changes is learned again.
 * See: /work/shared/ehr-behaviour.md, "What breaks a naive sync" 1, 2, 4, 6, 8, 17, 18.
 */
import type pg from 'pg';
import type { Refusal } from './refusal.ts';
import * as statements from './sql/plans.ts';

/** The types searched by patient, in order: what others refer to first. */
export const TYPE_ORDER = [
  'Encounter',
  'Condition',
  'AllergyIntolerance',
  'Goal',
  'Device',
  'Specimen',
  'Coverage',
  'ExplanationOfBenefit',
  'MedicationRequest',
  'MedicationDispense',
  'Immunization',
  'Procedure',
  'ServiceRequest',
  'Observation',
  'DiagnosticReport',
  'DocumentReference',
  'CarePlan',
  'CareTeam',
  'QuestionnaireResponse',
];
/** The patient parameters, in the order preferred. */
export const PATIENT_PARAMS = ['patient', 'subject', 'beneficiary'] as const;
/** Patient/$everything's query key. */
export const EVERYTHING = '$everything';
/** How long what was learned about a system holds. */
export const LEARN_DAYS = 7;
/** The page size asked when nothing was learned (a system may give more or fewer). */
export const PAGE_SIZE = 100;

export interface TypeCapability {
  type: string;
  patientParam: string;
  /** The `_lastUpdated` search parameter's name as the system lists it, when it does. */
  lastUpdated?: string;
}
export interface Capabilities {
  types: TypeCapability[];
  everything: boolean;
}

type CsResource = { type?: string; searchParam?: { name?: string }[]; operation?: { name?: string; definition?: string }[] };
type Cs = { resourceType?: string; rest?: { resource?: CsResource[]; operation?: { name?: string; definition?: string }[] }[] };
const isEverything = (op: { name?: string; definition?: string }) =>
  op.name === 'everything' || op.name === '$everything' || /\/OperationDefinition\/Patient-everything$/.test(op.definition ?? '');

/** The types and operations of a CapabilityStatement (anything else, or none: every type by `patient`, no $everything). */
export function readCapabilities(cs: unknown): Capabilities {
  const c = cs as Cs | undefined;
  const listed = c && typeof c === 'object' && Array.isArray(c.rest) ? c.rest.flatMap((r) => (Array.isArray(r?.resource) ? r.resource : [])) : [];
  if (!listed.length) return { types: TYPE_ORDER.map((type) => ({ type, patientParam: 'patient' })), everything: false };
  const everything =
    !!c!.rest!.some((r) => Array.isArray(r.operation) && r.operation.some(isEverything)) ||
    listed.some((r) => r.type === 'Patient' && Array.isArray(r.operation) && r.operation.some(isEverything));
  const byType = new Map(listed.filter((r) => typeof r?.type === 'string').map((r) => [r.type!, r]));
  const types: TypeCapability[] = [];
  for (const type of TYPE_ORDER) {
    const r = byType.get(type);
    if (!r) continue;
    const names = (Array.isArray(r.searchParam) ? r.searchParam : []).map((p) => p?.name).filter((n): n is string => typeof n === 'string');
    const patientParam = PATIENT_PARAMS.find((p) => names.includes(p));
    if (!patientParam) continue;
    const lastUpdated = names.find((n) => n.toLowerCase() === '_lastupdated');
    types.push({ type, patientParam, ...(lastUpdated ? { lastUpdated } : {}) });
  }
  return { types, everything };
}

/** What a token's scopes allow: `all` when they name no resource scope at all (nothing to go by). */
export interface Grants {
  all: boolean;
  /** Per type (`*` for the wildcard): may it be searched, may it be read. */
  types: Map<string, { search: boolean; read: boolean }>;
}

/**
 * The resource scopes of a granted scope string. v1: `patient/Observation.read` (search and read),
 * `.write` nothing, `.*` both; v2: `patient/Observation.rs` (`r` read, `s` search; a granular
 * `?category=…` scope still grants the type: the system narrows it). `user/` scopes count as well.
 * See: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html
 */
export function parseGrants(scope: string): Grants {
  const types = new Map<string, { search: boolean; read: boolean }>();
  let any = false;
  for (const s of scope.split(/\s+/)) {
    const m = /^(patient|user)\/([A-Za-z]+|\*)\.([A-Za-z*]+)(\?.*)?$/.exec(s);
    if (!m) continue;
    any = true;
    const [, , type, perm] = m;
    let read = false;
    let search = false;
    if (perm === 'read' || perm === '*') read = search = true;
    else if (perm !== 'write' && /^c?r?u?d?s?$/.test(perm)) {
      read = perm.includes('r');
      search = perm.includes('s');
    }
    const had = types.get(type) ?? { search: false, read: false };
    types.set(type, { search: had.search || search, read: had.read || read });
  }
  return { all: !any, types };
}

/** Whether the grants allow searching (or, for `read`, reading) a type. */
export function granted(g: Grants, type: string, how: 'search' | 'read'): boolean {
  if (g.all) return true;
  return !!(g.types.get(type)?.[how] || g.types.get('*')?.[how]);
}

/** US Core Observation categories, then the Epic-only ones (ehr-behaviour.md §1, "Observation categories"). */
export const OBSERVATION_CATEGORIES = [
  'laboratory',
  'vital-signs',
  'social-history',
  'survey',
  'exam',
  'imaging',
  'procedure',
  'therapy',
  'activity',
  'sdoh',
  'core-characteristics',
  'functional-mental-status',
  'LDA',
  'obstetrics-gynecology',
  'labor-delivery',
  'newborn-delivery',
  'periodontal',
];
/** CarePlan categories: US Core's, then SNOMED care plan kinds and Epic's (ehr-behaviour.md §1 "CarePlan", §2). */
export const CAREPLAN_CATEGORIES = ['assess-plan', '38717003', '734163000', '736271009', '736353004', 'inpatient-pathway', 'care-path'];
const MEDICATION_INTENTS = ['order', 'plan', 'proposal', 'option'];
const CARETEAM_STATUSES = ['active', 'proposed', 'suspended', 'inactive', 'entered-in-error'];

/**
 * The searches to try, in order, when a type's plain search is refused for a missing parameter:
 * each a query-string part (`category=laboratory`). MedicationRequest and CareTeam try every value
 * at once first (one request where the system takes a list; athena, eCW), then one by one; the
 * categories go one by one, so that one suppressed category costs that category only.
 * The groups: the first is tried; the next only if it was refused (all of its variants).
 */
export function fanOut(type: string): string[][] {
  switch (type) {
    case 'Observation':
      return [OBSERVATION_CATEGORIES.map((c) => `category=${encodeURIComponent(c)}`)];
    case 'CarePlan':
      return [CAREPLAN_CATEGORIES.map((c) => `category=${encodeURIComponent(c)}`)];
    case 'MedicationRequest':
      return [[`intent=${MEDICATION_INTENTS.join(',')}`], MEDICATION_INTENTS.map((i) => `intent=${i}`)];
    case 'CareTeam':
      return [[`status=${CARETEAM_STATUSES.join(',')}`], CARETEAM_STATUSES.map((s) => `status=${s}`)];
    default:
      return [];
  }
}

/** A query key: the type, and the variant's parameters (`Observation?category=laboratory`). */
export const queryKey = (type: string, variant?: string) => (variant ? `${type}?${variant}` : type);
/** The variant part of a query key. */
export const variantOf = (key: string) => (key.includes('?') ? key.slice(key.indexOf('?') + 1) : undefined);

/** What was learned about one type's searches at a system (or, under `*`, the system's page size; under `$everything`, its `_since`). */
export interface Learned {
  /** The query keys that work: later runs ask only these. Empty with `refused` set: nothing works. */
  working: string[];
  /** Query keys refused, with why (kinds that do not pass: not server errors, not page expiry). */
  refused: Record<string, Refusal>;
  /** Under `*`: the page size the system takes (0: send no `_count`). */
  pageSize?: number;
  /** The `_lastUpdated` prefix the system takes for the type; `none`: none, so the type is fetched whole. */
  sincePrefix?: 'gt' | 'ge' | 'none';
  /** $everything: whether `_since` is honoured (false: an increment returned as much as a full fetch). */
  sinceHonoured?: boolean;
  /** $everything: the matches its last full fetch returned. */
  fullCount?: number;
  learnedAt: Date;
}

/** The system's plans still fresh (learned in the last LEARN_DAYS), by type. */
export async function loadLearned(pool: pg.Pool, systemId: string): Promise<Map<string, Learned>> {
  const { rows } = await pool.query<{
    res_type: string;
    working: string[];
    refused: Record<string, Refusal>;
    page_size: number | null;
    since_prefix: Learned['sincePrefix'] | null;
    since_honoured: boolean | null;
    full_count: number | null;
    learned_at: Date;
  }>(statements.learnedPlans(systemId, LEARN_DAYS));
  return new Map(
    rows.map((r) => [
      r.res_type,
      {
        working: r.working,
        refused: r.refused,
        ...(r.page_size !== null ? { pageSize: r.page_size } : {}),
        ...(r.since_prefix ? { sincePrefix: r.since_prefix } : {}),
        ...(r.since_honoured !== null ? { sinceHonoured: r.since_honoured } : {}),
        ...(r.full_count !== null ? { fullCount: r.full_count } : {}),
        learnedAt: r.learned_at,
      },
    ]),
  );
}

/** Keeps what was learned about a type at a system (replacing what was known). */
export async function saveLearned(
  pool: pg.Pool,
  systemId: string,
  type: string,
  l: Omit<Learned, 'learnedAt'> & { learnedAt?: Date },
): Promise<void> {
  const refused = JSON.stringify(l.refused);
  await pool.query(
    statements.saveLearnedPlan(
      systemId,
      type,
      l.working,
      refused,
      l.pageSize ?? null,
      l.sincePrefix ?? null,
      l.sinceHonoured ?? null,
      l.fullCount ?? null,
      l.learnedAt ?? null,
    ),
  );
}

/** Forgets what was learned about a type at a system (it stopped being true): the next run learns again. */
export async function forgetLearned(pool: pg.Pool, systemId: string, type: string): Promise<void> {
  await pool.query(statements.forgetLearnedPlan(systemId, type));
}
