/**
 * SMART scopes: which interactions on which resource types a token allows.
 * - v1: `patient/Observation.read`, `user/*.write`, `system/*.*` (read = rs, write = cud, * = cruds);
 * - v2: `patient/Observation.rs`, `user/*.cruds`, with a query filter: `patient/Observation.rs?category=laboratory`.
 * Other scopes (openid, fhirUser, launch/patient, offline_access) grant no data access.
 * A token's data are its user's (or its app's): the context (patient/, user/, system/) adds no
 * restriction beyond that here, since one user's records are one person's.
 * See: https://build.fhir.org/ig/HL7/smart-app-launch/scopes-and-launch-context.html
 */
import { isResourceType } from '../fhir/resource-type.ts';

/** c create, r read, u update, d delete, s search. */
export type Interaction = 'c' | 'r' | 'u' | 'd' | 's';

export interface ResourceScope {
  /** The scope as granted, e.g. `patient/Observation.rs?category=laboratory` (for messages). */
  text: string;
  context: 'patient' | 'user' | 'system';
  /** A resource type, or `*`. */
  type: string;
  interactions: Set<Interaction>;
  /** v2 query filter, e.g. [['category', 'laboratory']]. */
  filter: [string, string][];
}

const SCOPE = /^(patient|user|system)\/([A-Za-z]+|\*)\.(read|write|\*|c?r?u?d?s?)(?:\?(.+))?$/;
const V1: Record<string, string> = { read: 'rs', write: 'cud', '*': 'cruds' };

/** One resource scope, or undefined when `s` is not one (another kind of scope, or an unknown resource type). */
export function parseScope(s: string): ResourceScope | undefined {
  const m = SCOPE.exec(s);
  if (!m || !m[3]) return undefined;
  if (m[2] !== '*' && !isResourceType(m[2])) return undefined;
  const letters = V1[m[3]] ?? m[3];
  return {
    text: s,
    context: m[1] as ResourceScope['context'],
    type: m[2],
    interactions: new Set(letters.split('') as Interaction[]),
    filter: m[4] ? [...new URLSearchParams(m[4])] : [],
  };
}

/** The resource scopes of a scope string (space-separated); others are skipped. */
export function parseScopes(scope: string): ResourceScope[] {
  return scope
    .split(' ')
    .map(parseScope)
    .filter((s) => s !== undefined);
}

/**
 * Whether `wide` grants everything `narrow` does: the same context, its type or every type, at
 * least its interactions, and no filter `narrow` lacks (a filter's parameters all apply, so more
 * of them narrow it).
 */
export function covers(wide: ResourceScope, narrow: ResourceScope): boolean {
  return (
    wide.context === narrow.context &&
    (wide.type === '*' || wide.type === narrow.type) &&
    [...narrow.interactions].every((i) => wide.interactions.has(i)) &&
    wide.filter.every(([k, v]) => narrow.filter.some(([nk, nv]) => nk === k && nv === v))
  );
}

/** Whether a scope string is well-formed enough to grant (every resource scope parses). */
export function isKnownScope(s: string): boolean {
  return SCOPE.test(s) || ['openid', 'fhirUser', 'launch/patient', 'launch', 'offline_access', 'online_access', 'profile'].includes(s);
}

/**
 * What the scopes allow for one interaction on one type: 'denied', 'all', or the query filters of
 * which one must hold (any of them: each granting scope is an alternative).
 */
export function allowed(scopes: ResourceScope[], interaction: Interaction, type: string): 'denied' | 'all' | [string, string][][] {
  const granting = scopes.filter((s) => (s.type === '*' || s.type === type) && s.interactions.has(interaction));
  if (!granting.length) return 'denied';
  if (granting.some((s) => s.filter.length === 0)) return 'all';
  return granting.map((s) => s.filter);
}

/** Whether the scopes allow searching some type (a search across types returns those only). */
export function searchesAny(scopes: ResourceScope[]): boolean {
  return scopes.some((s) => s.interactions.has('s'));
}

/**
 * The scopes that let a search return or look at resources of `type` (`s`), for messages: the
 * v2 filters of a type allowed only through them, or the scope a token lacks.
 */
export function searchScopesOf(scopes: ResourceScope[], type: string): string[] {
  return scopes.filter((s) => (s.type === '*' || s.type === type) && s.interactions.has('s')).map((s) => s.text);
}

/**
 * The message of a 403 for a search that would reach `type`, which the scopes do not allow:
 * names the scope a token would need.
 */
export function missingSearchScope(type: string, what: string): string {
  return `The access token's scopes do not allow search on ${type} (patient/${type}.rs or patient/*.rs is missing), which ${what} would reach.`;
}
