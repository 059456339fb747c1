/**
 * Who a FHIR request acts as and what it may do: the partition and owner its credentials reach
 * (its Scope), and the check of its SMART scopes against each interaction it asks for. Searches
 * take the scopes along: the engine applies them to the matches, to what they include and to the
 * targets of chains (v2 filters too).
 * See: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html
 */
import type { Bundle } from '@medplum/fhirtypes';
import { allowed, missingSearchScope, parseScopes, searchesAny, searchScopesOf, type Interaction, type ResourceScope } from '../auth/scopes.ts';
import { topicOf } from '../subscriptions/topics.ts';
import { fhirError, type FhirError } from './errors.ts';
import type { Scope } from './ports.ts';

/** The scope of a request the access check did not pass: partition -1 holds nothing. */
export const NO_ACCESS: Scope = { partitionId: -1, ownerId: null };

/** What the credentials of a request name (src/auth's Access): an app, a user of it or none, the scopes granted. */
export interface Caller {
  app: { id: number };
  userId: string | null;
  scope: string;
}

export interface AccessRules {
  /**
   * Serve one app's data only: tokens and credentials of other apps are refused, and FHIR_AUTH=off
   * does not open it (a sandbox health system's FHIR base).
   */
  onlyApp?: number;
  /** Whether an app is a hosted system (a sandbox), whose tokens are for its own base only. */
  hosted: (appId: number) => boolean;
  /** FHIR_AUTH=off: a request without credentials reaches the built-in app's data. */
  authOff: boolean;
}

/** Whose data a request reaches and its scopes (absent: everything), or why it is refused. */
export type RequestAccess = { scope: Scope; grants?: ResourceScope[] } | { refused: 'missing' | 'invalid' };

/** The access of a request from what its credentials name ('invalid': given but wrong; undefined: none given). */
export function requestAccess(access: Caller | 'invalid' | undefined, rules: AccessRules): RequestAccess {
  // A hosted system's (a sandbox's) tokens are for its own base; its base takes no one else's.
  if (access && access !== 'invalid' && (rules.onlyApp === undefined ? rules.hosted(access.app.id) : access.app.id !== rules.onlyApp))
    access = 'invalid';
  if (access === undefined && rules.authOff && rules.onlyApp === undefined) return { scope: { partitionId: 0, ownerId: null } };
  if (access === undefined || access === 'invalid') return { refused: access ? 'invalid' : 'missing' };
  // A sandbox system's patient also reads what the system holds for all (its practitioners...).
  return {
    scope: { partitionId: access.app.id, ownerId: access.userId, ...(rules.onlyApp !== undefined ? { withUnowned: true } : {}) },
    grants: parseScopes(access.scope),
  };
}

/** The 401 of a request without usable credentials. */
export function unauthenticated(refused: 'missing' | 'invalid'): FhirError {
  return fhirError(
    401,
    'login',
    refused === 'invalid'
      ? 'The access token or client credentials are unknown, expired or revoked, or x-oneup-user-id names no user of this app.'
      : 'Authentication is required: send Authorization: Bearer <access token>, or client_id, client_secret and x-oneup-user-id headers.',
  );
}

/**
 * 403 unless the scopes allow the interaction on the type. A search allowed only through v2
 * filters passes: the search engine applies them. Reads, writes and history need the type whole.
 */
export function need(granted: ResourceScope[] | undefined, interaction: Interaction, type: string): void {
  if (!granted) return;
  const verdict = allowed(granted, interaction, type);
  if (verdict === 'all') return;
  if (verdict !== 'denied' && interaction === 's') return;
  const what = { c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search' }[interaction];
  throw fhirError(
    403,
    'forbidden',
    verdict === 'denied'
      ? `The access token's scopes do not allow ${what} on ${type === '*' ? 'all types' : type}.`
      : `The access token's scopes allow ${what} on ${type} only through query filters (${searchScopesOf(granted, type).join(', ')}), which apply to a search of ${type}.`,
  );
}

/** 403 unless the scopes allow searching the type whole: what no filter can be applied to (history, whose past versions are not indexed). */
export function needWhole(granted: ResourceScope[] | undefined, type: string, what: string): void {
  if (!granted) return;
  const verdict = allowed(granted, 's', type);
  if (verdict === 'all') return;
  if (verdict === 'denied') throw fhirError(403, 'forbidden', missingSearchScope(type, what));
  throw fhirError(
    403,
    'forbidden',
    `The access token's scopes allow ${type} only through query filters (${searchScopesOf(granted, type).join(', ')}), which cannot be applied to ${what}: patient/${type}.rs without a filter is missing.`,
  );
}

/**
 * The types a system-level `_history` may return: those the scopes grant for search whole
 * (undefined: every type). Past versions are not indexed, so no v2 filter can be applied to
 * them: a token with one is refused rather than shown versions its filter would exclude.
 */
export function historyTypes(granted: ResourceScope[] | undefined): string[] | undefined {
  if (!granted || allowed(granted, 's', '*') === 'all') return undefined;
  const searching = granted.filter((g) => g.interactions.has('s'));
  const filtered = searching.filter((g) => g.filter.length);
  if (filtered.length) {
    throw fhirError(
      403,
      'forbidden',
      `The access token's scopes filter some types (${filtered.map((g) => g.text).join(', ')}); filters cannot be applied to past versions, so _history across types needs those types granted without a filter.`,
    );
  }
  return [...new Set(searching.map((g) => g.type))];
}

/** A request as the scope check sees it: the route it matched and what it carries. */
export interface RouteRequest {
  /** The route's pattern under the FHIR base, e.g. `/:type/_search` (`/` for the base itself, or no route). */
  route: string;
  method: string;
  /** The `:type` of the route. */
  type?: string;
  body: unknown;
  /** The search parameters of the request (query string and form body), read only when needed. */
  searchQuery: () => URLSearchParams;
}

const ENTRY_INTERACTION: Record<string, Interaction> = { POST: 'c', PUT: 'u', PATCH: 'u', DELETE: 'd' };

/** Checks every interaction of a route against the scopes, once the body is parsed (a Bundle's entries each count). */
export function checkRouteScopes(granted: ResourceScope[], r: RouteRequest): void {
  const { route } = r;
  // $reindex and the Subscription operations check their caller themselves; $everything and $export
  // return the types the scopes allow.
  if (route === '/metadata' || route.includes('$reindex') || route.endsWith('$everything') || route.includes('$export')) return;
  if (route.startsWith('/Subscription/') && (route.endsWith('$status') || route.endsWith('$events'))) return;
  // De-duplication's Linkage routes (plugins/dedup-routes.ts) check their caller themselves.
  if (route === '/Linkage' || route.startsWith('/Linkage/')) return;
  if (route === '/' && r.method === 'POST') {
    for (const e of (r.body as Bundle | undefined)?.entry ?? []) {
      const method = e.request?.method ?? '';
      const [path] = (e.request?.url ?? '').split('?');
      const parts = path.split('/').filter(Boolean);
      const type = parts[0] ?? '*';
      // A GET entry is a read, vread or search (readEntry); its searches take the scopes along.
      if (method === 'GET') need(granted, parts.length === 1 ? 's' : 'r', parts.length ? type : '*');
      else if (ENTRY_INTERACTION[method]) {
        need(granted, ENTRY_INTERACTION[method], type);
        if (type === 'Subscription') needSubscriptionReach(granted, method, e.resource);
      }
    }
    return;
  }
  if (route === '/' || route === '/_search' || route === '/_history') {
    // Across types: those the scopes allow (the engine and history keep to them).
    const types = route === '/_history' ? [] : r.searchQuery().getAll('_type').join(',').split(',').filter(Boolean);
    if (!types.length && !searchesAny(granted)) need(granted, 's', '*');
    for (const t of types) need(granted, 's', t);
    return;
  }
  const type = r.type!;
  if ((r.method === 'GET' && (route === '/:type' || route === '/:type/_search' || route === '/:ctype/:cid/:type')) || route === '/:type/_search') {
    need(granted, 's', type);
  } else if (r.method === 'GET' && route === '/:type/_history') {
    needWhole(granted, type, `${type}/_history`);
  } else if (r.method === 'GET') {
    need(granted, 'r', type);
  } else {
    need(granted, r.method === 'POST' ? 'c' : r.method === 'DELETE' ? 'd' : 'u', type);
    if (type === 'Subscription') needSubscriptionReach(granted, r.method, r.body);
  }
}

/**
 * A Subscription written with a token hears of no more than the token could read: the type of its
 * criteria (or of its topic) searched whole (its notifications carry the resources, unfiltered), and
 * with chains or _has, every type. A PATCH, whose outcome is not known here, needs every type too.
 */
function needSubscriptionReach(granted: ResourceScope[], method: string, body: unknown): void {
  if (method === 'DELETE') return;
  if (method === 'PATCH') return needWhole(granted, '*', 'a Subscription changed by PATCH (send it whole with PUT instead)');
  const sub = body as { criteria?: unknown; _criteria?: { extension?: { valueString?: unknown }[] } } | undefined;
  const criteria = sub?.criteria;
  if (typeof criteria !== 'string') return; // the Subscription is refused, or put in error, for it
  const type = topicOf(criteria)?.resourceType ?? criteria.split('?')[0];
  needWhole(granted, type, `a Subscription of ${type}`);
  // The criteria's parameters, and a topic's filters' (the backport's filter-criteria).
  const query = (q: string) => (q.includes('?') ? q.slice(q.indexOf('?') + 1) : q);
  const queries = [
    criteria.includes('?') ? query(criteria) : '',
    ...(sub?._criteria?.extension ?? []).map((e) => (typeof e.valueString === 'string' ? query(e.valueString) : '')),
  ];
  const keys = queries.flatMap((q) => [...new URLSearchParams(q).keys()]);
  if (keys.some((k) => k.split(':')[0].includes('.') || k.startsWith('_has')))
    needWhole(granted, '*', 'a Subscription whose criteria reach other types (a chain or _has)');
}
