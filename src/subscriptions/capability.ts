/**
 * What the CapabilityStatement says of subscriptions (src/fhir/server-capabilities.ts lists it):
 * the backport IG it implements, the Subscription profile it takes, its topics (by canonical, the
 * backport's extension on the Subscription resource entry) and the `$status` and `$events`
 * operations.
 * See: https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/components.html#subscriptiontopic-discovery
 */
import type { CapabilityStatementRestResource } from '@medplum/fhirtypes';
import { BACKPORT_PROFILE } from './definition.ts';
import { EVENTS_DEFINITION, STATUS_DEFINITION } from './operations.ts';
import { TOPICS } from './topics.ts';

export const BACKPORT_IG = 'http://hl7.org/fhir/uv/subscriptions-backport/ImplementationGuide/hl7.fhir.uv.subscriptions-backport|1.1.0';
const TOPIC_CANONICAL = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical';

/** Subscription's type operations. */
export const SUBSCRIPTION_OPERATIONS = [
  { name: 'status', definition: STATUS_DEFINITION },
  { name: 'events', definition: EVENTS_DEFINITION },
];

/** What to add to the Subscription entry of CapabilityStatement.rest.resource. */
export function subscriptionResourceExtras(): Pick<CapabilityStatementRestResource, 'extension' | 'supportedProfile' | 'documentation'> {
  return {
    extension: TOPICS.map((t) => ({ url: TOPIC_CANONICAL, valueCanonical: t.url })),
    supportedProfile: [BACKPORT_PROFILE],
    documentation:
      "R4 rest-hook subscriptions (criteria a search; payload none or application/fhir+json, PUT to [endpoint]/[type]/[id]) and the R5 backport's topic-based ones (a topic of this server, filter-criteria, handshake, heartbeat, $status, $events). Notifications are signed in the Standard Webhooks format with the app's webhook secret.",
  };
}
