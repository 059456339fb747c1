/**
 * Notification Bundles of topic-based subscriptions (the Subscriptions R5 Backport IG, R4): a
 * `history` Bundle whose first entry is the SubscriptionStatus (a Parameters, in the R4 profile),
 * then one entry per event's focus (its full resource, or its id only). The same shape answers
 * `$status` (query-status, in a searchset) and `$events` (query-event).
 * See: https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/notifications.html,
 *      https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/StructureDefinition-backport-subscription-status-r4.html
 */
import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, Parameters, ParametersParameter, Resource } from '@medplum/fhirtypes';

export const STATUS_PROFILE = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4';

export type NotificationType = 'handshake' | 'heartbeat' | 'event-notification' | 'query-status' | 'query-event';

export interface NotificationEvent {
  number: string;
  timestamp: Date;
  type: string;
  id: string;
  version: number;
  /** The event was the focus's delete: its entry has no resource. */
  deleted: boolean;
  /** The focus as stored (full-resource), or undefined (id-only, empty, a delete). */
  resource?: Resource;
}

export interface StatusInput {
  /** The FHIR base the references are under. */
  base: string;
  subscriptionId: string;
  topic: string | null;
  status: string;
  type: NotificationType;
  eventsSinceStart: string;
  error?: string | null;
  /** id-only and full-resource: the focus named (and its entry); empty: neither. */
  withFocus: boolean;
}

/** The SubscriptionStatus Parameters of a notification. */
export function subscriptionStatus(s: StatusInput, events: NotificationEvent[]): Parameters {
  const parameter: ParametersParameter[] = [
    { name: 'subscription', valueReference: { reference: `${s.base}/Subscription/${s.subscriptionId}` } },
    ...(s.topic ? [{ name: 'topic', valueCanonical: s.topic }] : []),
    { name: 'status', valueCode: s.status },
    { name: 'type', valueCode: s.type },
    // A string in the R4 profile: the count is an int64.
    { name: 'events-since-subscription-start', valueString: s.eventsSinceStart },
  ];
  for (const e of events) {
    parameter.push({
      name: 'notification-event',
      part: [
        { name: 'event-number', valueString: e.number },
        { name: 'timestamp', valueInstant: e.timestamp.toISOString() },
        ...(s.withFocus ? [{ name: 'focus', valueReference: { reference: `${s.base}/${e.type}/${e.id}` } }] : []),
      ],
    });
  }
  if (s.error) parameter.push({ name: 'error', valueCodeableConcept: { text: s.error } });
  return { resourceType: 'Parameters', id: randomUUID(), meta: { profile: [STATUS_PROFILE] }, parameter };
}

/** A notification Bundle (history); with `searchset`, the $status answer's. */
export function notificationBundle(s: StatusInput, events: NotificationEvent[], bundleType: 'history' | 'searchset' = 'history'): Bundle {
  const status = subscriptionStatus(s, events);
  const entry: BundleEntry[] = [
    {
      fullUrl: `urn:uuid:${status.id}`,
      resource: status,
      ...(bundleType === 'history'
        ? { request: { method: 'GET', url: `${s.base}/Subscription/${s.subscriptionId}/$status` }, response: { status: '200' } }
        : { search: { mode: 'match' } }),
    },
  ];
  if (s.withFocus) {
    for (const e of events) {
      const [method, status] = e.deleted ? (['DELETE', '204'] as const) : e.version === 1 ? (['POST', '201'] as const) : (['PUT', '200'] as const);
      entry.push({
        fullUrl: `${s.base}/${e.type}/${e.id}`,
        ...(e.resource && !e.deleted ? { resource: e.resource } : {}),
        request: { method, url: method === 'POST' ? e.type : `${e.type}/${e.id}` },
        response: { status },
      });
    }
  }
  return {
    resourceType: 'Bundle',
    id: randomUUID(),
    type: bundleType,
    timestamp: new Date().toISOString(),
    ...(bundleType === 'searchset' ? { total: 1 } : {}),
    entry,
  };
}
