/**
 * The SubscriptionTopics this server defines, for topic-based subscriptions (the Subscriptions R5
 * Backport IG for R4): one per common resource type, "a resource of the type is created or
 * updated", each filtered by any search parameter of its type (the backport's filter-criteria,
 * `Observation?code=...`, evaluated as an R4 criteria search).
 * See: https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/topics.html
 */

/** Where the topics' canonical URLs live (the project's namespace, as its other definitions). */
export const TOPIC_BASE = 'https://tributary.dev/fhir/SubscriptionTopic';

/** The types with a topic: what a person's record holds and an app watches for. */
export const TOPIC_TYPES = [
  'AllergyIntolerance',
  'CarePlan',
  'CareTeam',
  'Condition',
  'Coverage',
  'Device',
  'DiagnosticReport',
  'DocumentReference',
  'Encounter',
  'ExplanationOfBenefit',
  'Goal',
  'Immunization',
  'MedicationAdministration',
  'MedicationDispense',
  'MedicationRequest',
  'MedicationStatement',
  'Observation',
  'Patient',
  'Procedure',
  'Provenance',
  'ServiceRequest',
] as const;

export interface Topic {
  url: string;
  resourceType: string;
  title: string;
}

export const topicUrl = (type: string): string => `${TOPIC_BASE}/${type}`;

export const TOPICS: readonly Topic[] = TOPIC_TYPES.map((t) => ({ url: topicUrl(t), resourceType: t, title: `${t} created or updated` }));

const BY_URL = new Map(TOPICS.map((t) => [t.url, t]));

/** The topic a canonical names (a `|version` suffix ignored), or undefined. */
export function topicOf(canonical: string): Topic | undefined {
  return BY_URL.get(canonical.split('|')[0]);
}
