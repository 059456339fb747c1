/**
 * The CapabilityStatement, generated from what the server really supports: every resource type
 * the validator knows, the interactions the router serves, the search parameters indexed for
 * each type. Nothing here is maintained by hand.
 * See: https://hl7.org/fhir/R4/capabilitystatement.html
 */
import type { CapabilityStatement, CapabilityStatementRestResource } from '@medplum/fhirtypes';
import type { SearchParamLookup } from './ports.ts';
import { R4_RESOURCE_TYPES } from './validation/resource-types.ts';

export interface CapabilityOptions {
  baseUrl: string;
  software: { name: string; version: string };
  params: SearchParamLookup;
  /** Type-level interactions served for every resource type. */
  interactions: string[];
  /** System-level interactions (transaction, batch, history-system, search-system). */
  systemInteractions: string[];
  formats: string[];
  patchFormats: string[];
}

export function buildCapabilityStatement(o: CapabilityOptions): CapabilityStatement {
  const resources: CapabilityStatementRestResource[] = [...R4_RESOURCE_TYPES].sort().map((type) => ({
    type: type as CapabilityStatementRestResource['type'],
    profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
    interaction: o.interactions.map((code) => ({ code: code as 'read' })),
    versioning: 'versioned-update',
    readHistory: true,
    updateCreate: true,
    conditionalCreate: true,
    conditionalRead: 'not-supported',
    conditionalUpdate: true,
    conditionalDelete: 'single',
    referencePolicy: ['literal', 'logical', 'local'],
    searchParam: o.params
      .list(type)
      .map((p) => ({ name: p.code, type: p.type as 'string', definition: undefined }))
      .sort((a, b) => a.name.localeCompare(b.name)),
  }));
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: o.software,
    implementation: { description: 'Tributary FHIR R4 server', url: o.baseUrl },
    fhirVersion: '4.0.1',
    format: o.formats,
    patchFormat: o.patchFormats,
    rest: [
      {
        mode: 'server',
        resource: resources,
        interaction: o.systemInteractions.map((code) => ({ code: code as 'transaction' })),
      },
    ],
  };
}
