/**
 * What a Subscription resource asks for, read once as it is written: an R4 criteria search
 * (`Observation?code=...`) or a topic of this server with its filters (the R5 Backport IG), the
 * rest-hook channel (endpoint, headers, payload), the heartbeat; and why it cannot be served, when
 * it cannot (that reason becomes Subscription.error).
 * See: https://hl7.org/fhir/R4/subscription.html, https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/
 */
import { createHash } from 'node:crypto';
import type { SearchParamLookup } from '../fhir/ports.ts';
import { isResourceType } from '../fhir/resource-type.ts';
import { urlProblem } from '../sync/webhooks.ts';
import { compileCriteria, type CompiledCriteria } from './evaluate.ts';
import { topicOf } from './topics.ts';

const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
export const FILTER_CRITERIA = `${BACKPORT}/backport-filter-criteria`;
export const PAYLOAD_CONTENT = `${BACKPORT}/backport-payload-content`;
export const HEARTBEAT_PERIOD = `${BACKPORT}/backport-heartbeat-period`;
export const BACKPORT_PROFILE = `${BACKPORT}/backport-subscription`;
/** Medplum's: the one interaction a subscription hears of (repeated, each one heard). */
export const SUPPORTED_INTERACTION = 'https://medplum.com/fhir/StructureDefinition/subscription-supported-interaction';
/** HAPI FHIR's: true adds deletes to the creates and updates an R4 subscription hears of. */
export const SEND_DELETES = 'http://hapifhir.io/fhir/StructureDefinition/subscription-send-delete-messages';

export type Interaction = 'create' | 'update' | 'delete';
const INTERACTIONS: readonly Interaction[] = ['create', 'update', 'delete'];

/** none: R4's empty notification; full: the resource (R4) or full-resource (backport); the backport's id-only and empty. */
export type Payload = 'none' | 'full' | 'id-only' | 'empty';

/** Subscription status the registry keeps: requested until the dispatcher accepts it. */
export type RegistryStatus = 'requested' | 'active' | 'error' | 'off';

export interface Definition {
  /** What the client asked for: requested (also when it wrote active), off, or error. */
  wanted: RegistryStatus;
  resourceType: string | null;
  /** The search evaluated on writes: `[type]?[query]`. */
  criteria: string | null;
  /** The topic's canonical, for a topic-based subscription. */
  topic: string | null;
  heartbeatSeconds: number | null;
  /** What it hears of: creates and updates unless an extension says otherwise. */
  interactions: Interaction[];
  /** Subscription.end: when it stops hearing of writes (and is turned off); null: never. */
  endsAt: Date | null;
  /** Why it cannot be served, or undefined. */
  problem: string | undefined;
  /** A hash of what decides matching and delivery: a change asks for activation again. */
  hash: string;
}

/** The channel as delivery reads it (from the current version, never copied elsewhere: headers may carry secrets). */
export interface Channel {
  endpoint: string;
  /** `Name: value` lines, as Subscription.channel.header has them. */
  headers: [string, string][];
  payload: Payload;
}

interface Extended {
  extension?: { url?: string; valueString?: string; valueCode?: string; valueUnsignedInt?: number; valueBoolean?: boolean }[];
}
export interface SubscriptionLike extends Extended {
  resourceType: 'Subscription';
  status?: string;
  criteria?: string;
  _criteria?: Extended;
  meta?: { profile?: string[] };
  channel?: { type?: string; endpoint?: string; payload?: string; _payload?: Extended; header?: string[] } & Extended;
  error?: string;
  end?: string;
}

/** A header line a client may not set (the notification's own, or the connection's). */
const RESERVED = /^(host|content-length|content-type|transfer-encoding|connection|webhook-id|webhook-timestamp|webhook-signature)$/i;

export function parseHeaders(lines: string[] | undefined): [string, string][] {
  return (lines ?? []).map((line) => {
    const i = line.indexOf(':');
    if (i <= 0) throw new Error('each channel.header is "Name: value".');
    const name = line.slice(0, i).trim();
    const value = line.slice(i + 1).trim();
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n\0]/.test(value)) throw new Error('each channel.header is "Name: value".');
    if (RESERVED.test(name)) throw new Error(`channel.header may not set ${name}: the server sets it.`);
    return [name, value];
  });
}

/** Whether a Subscription is topic-based (the backport): its criteria a canonical, not a search. */
export const isTopicBased = (s: SubscriptionLike): boolean => /^[a-z][a-z0-9+.-]*:\/\//i.test(s.criteria ?? '');

/** The channel of a Subscription (throws an Error saying what is wrong). */
export function channelOf(s: SubscriptionLike): Channel {
  const ch = s.channel ?? {};
  if (ch.type !== 'rest-hook') throw new Error(`channel.type "${ch.type ?? ''}" is not supported: this server sends rest-hook notifications only.`);
  if (!ch.endpoint) throw new Error('channel.endpoint is missing: the URL notifications are sent to.');
  const headers = parseHeaders(ch.header);
  const mime = ch.payload?.split(';')[0].trim();
  if (mime !== undefined && mime !== 'application/fhir+json' && mime !== 'application/json')
    throw new Error(`channel.payload "${ch.payload}" is not supported: send application/fhir+json, or leave it out for an empty notification.`);
  let payload: Payload;
  if (isTopicBased(s)) {
    const content = ch._payload?.extension?.find((e) => e.url === PAYLOAD_CONTENT)?.valueCode ?? 'id-only';
    if (content !== 'empty' && content !== 'id-only' && content !== 'full-resource')
      throw new Error(`payload content "${content}" is not one of empty, id-only, full-resource.`);
    payload = content === 'full-resource' ? 'full' : content;
  } else payload = mime === undefined ? 'none' : 'full';
  return { endpoint: ch.endpoint, headers, payload };
}

/** A Subscription read for the registry. Never throws: what cannot be served is its `problem`. */
export function readDefinition(s: SubscriptionLike, params: SearchParamLookup, allowHttp: boolean, baseUrls: string[]): Definition {
  const status = s.status;
  const wanted: RegistryStatus = status === 'off' ? 'off' : status === 'error' ? 'error' : 'requested';
  // Past (or once past), the dispatcher turns it off; it is never matched after it.
  const endsAt = s.end === undefined ? null : new Date(s.end);
  let resourceType: string | null = null;
  let criteria: string | null = null;
  let topic: string | null = null;
  let heartbeatSeconds: number | null = null;
  let interactions: Interaction[] = ['create', 'update'];
  let problem: string | undefined;
  try {
    if (endsAt && Number.isNaN(endsAt.getTime())) throw new Error(`end "${String(s.end).slice(0, 40)}" is not an instant.`);
    interactions = interactionsOf(s);
    const channel = channelOf(s);
    const bad = urlProblem(channel.endpoint, allowHttp);
    if (bad) throw new Error(bad.replace(/^url /, 'channel.endpoint '));
    if (isTopicBased(s)) {
      const t = topicOf(s.criteria!);
      if (!t) throw new Error(`"${s.criteria}" is not a SubscriptionTopic of this server (see its CapabilityStatement).`);
      topic = t.url;
      resourceType = t.resourceType;
      const filters = (s._criteria?.extension ?? []).filter((e) => e.url === FILTER_CRITERIA).map((e) => e.valueString ?? '');
      const query = new URLSearchParams();
      for (const f of filters) {
        const [type, q] = splitCriteria(f.includes('?') ? f : `${t.resourceType}?${f}`);
        if (type !== t.resourceType) throw new Error(`the filter "${f}" is not on ${t.resourceType}, the topic's resource.`);
        for (const [k, v] of new URLSearchParams(q)) query.append(k, v);
      }
      criteria = `${t.resourceType}?${query}`;
      const hb = s.channel?.extension?.find((e) => e.url === HEARTBEAT_PERIOD)?.valueUnsignedInt;
      if (hb !== undefined && hb > 0) heartbeatSeconds = Math.min(hb, 86_400);
    } else {
      [resourceType] = splitCriteria(s.criteria ?? '');
      criteria = s.criteria!;
    }
    compile(params, criteria, baseUrls);
  } catch (err) {
    problem = (err as Error).message;
  }
  // The interactions only when not the default's, so that the hashes of subscriptions written before they were read stay the same.
  const heard = interactions.join() === 'create,update' ? [] : [interactions];
  const hash = createHash('sha256')
    .update(JSON.stringify([s.criteria, s._criteria ?? null, s.channel ?? null, s.meta?.profile ?? null, ...heard]))
    .digest('hex');
  return {
    wanted,
    resourceType,
    criteria,
    topic,
    heartbeatSeconds,
    interactions,
    endsAt: endsAt && !Number.isNaN(endsAt.getTime()) ? endsAt : null,
    problem,
    hash,
  };
}

/**
 * The interactions a subscription hears of. Topics of this server are of creates and updates; an R4
 * criteria subscription too, as in Medplum and HAPI FHIR, unless it names its own with Medplum's
 * extension (each one it names) or asks for deletes as well with HAPI's.
 */
export function interactionsOf(s: SubscriptionLike): Interaction[] {
  const ext = s.extension ?? [];
  const named = ext.filter((e) => e.url === SUPPORTED_INTERACTION).map((e) => e.valueCode ?? '');
  for (const code of named)
    if (!(INTERACTIONS as readonly string[]).includes(code))
      throw new Error(`the subscription-supported-interaction "${code}" is not one of create, update, delete.`);
  if (named.length && isTopicBased(s))
    throw new Error('a topic-based subscription hears of what its topic says; leave out subscription-supported-interaction.');
  const set = new Set<Interaction>(named.length ? (named as Interaction[]) : ['create', 'update']);
  if (!isTopicBased(s) && ext.some((e) => e.url === SEND_DELETES && e.valueBoolean === true)) set.add('delete');
  return INTERACTIONS.filter((i) => set.has(i));
}

/** `Type?query` in its two parts; throws when the type is not a resource type. */
export function splitCriteria(criteria: string): [string, string] {
  const q = criteria.indexOf('?');
  const type = q < 0 ? criteria : criteria.slice(0, q);
  if (!isResourceType(type))
    throw new Error(`criteria "${criteria.slice(0, 200)}" is not a search such as Observation?code=http://loinc.org|1234-5.`);
  return [type, q < 0 ? '' : criteria.slice(q + 1)];
}

/** The criteria compiled for the write path. */
export function compile(
  params: SearchParamLookup,
  criteria: string,
  baseUrls: string[],
): { type: string; query: [string, string][]; compiled: CompiledCriteria } {
  const [type, q] = splitCriteria(criteria);
  const query = [...new URLSearchParams(q)];
  return { type, query, compiled: compileCriteria(params, type, query, baseUrls) };
}
