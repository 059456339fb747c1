/**
 * What Tributary's FHIR API states in its CapabilityStatement: the interactions plugins/fhir.ts
 * serves, JSON only, JSON Patch, `$reindex`, Bulk Data's `$export` (system, Patient, Group),
 * Subscriptions (R4 and the R5 backport: its topics, `$status`, `$events`),
 * `Patient/$everything` (unless a sandbox system plays one without it), and the SMART endpoints
 * of the server's authorization server.
 * See: https://hl7.org/fhir/R4/http.html#capabilities
 */
import type { CapabilityStatement } from '@medplum/fhirtypes';
import { buildCapabilityStatement } from './capability.ts';
import type { SearchParamLookup } from './ports.ts';
import { BACKPORT_IG, SUBSCRIPTION_OPERATIONS, subscriptionResourceExtras } from '../subscriptions/capability.ts';

const INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type'];
const SYSTEM_INTERACTIONS = ['transaction', 'batch', 'history-system', 'search-system'];
/** Bulk Data Access 2.0's operations. See: https://hl7.org/fhir/uv/bulkdata/OperationDefinition-export.html */
const BULK = 'http://hl7.org/fhir/uv/bulkdata';

export interface ServerCapabilityOptions {
  /** The FHIR base URL. */
  baseUrl: string;
  /** The server's base URL (where /oauth2 is). */
  serverUrl: string;
  softwareVersion?: string;
  params: SearchParamLookup;
  /** Whether `Patient/[id]/$everything` is served (default true). */
  everything?: boolean;
}

export function serverCapabilityStatement(o: ServerCapabilityOptions): CapabilityStatement {
  return buildCapabilityStatement({
    baseUrl: o.baseUrl,
    software: { name: 'Tributary', version: o.softwareVersion ?? '0' },
    params: o.params,
    interactions: INTERACTIONS,
    systemInteractions: SYSTEM_INTERACTIONS,
    formats: ['application/fhir+json', 'json'],
    patchFormats: ['application/json-patch+json'],
    instantiates: [`${BULK}/CapabilityStatement/bulk-data`],
    implementationGuide: [BACKPORT_IG],
    operations: [
      { name: 'reindex', definition: 'http://hapifhir.io/fhir/OperationDefinition/Reindex' },
      { name: 'export', definition: `${BULK}/OperationDefinition/export` },
    ],
    typeOperations: {
      Patient: [
        ...(o.everything === false ? [] : [{ name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' }]),
        { name: 'export', definition: `${BULK}/OperationDefinition/patient-export` },
      ],
      Group: [{ name: 'export', definition: `${BULK}/OperationDefinition/group-export` }],
      Subscription: SUBSCRIPTION_OPERATIONS,
    },
    resourceExtras: { Subscription: subscriptionResourceExtras() },
    oauth: { authorize: `${o.serverUrl}/oauth2/authorize`, token: `${o.serverUrl}/oauth2/token`, revoke: `${o.serverUrl}/oauth2/revoke` },
  });
}
