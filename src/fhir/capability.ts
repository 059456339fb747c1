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
  /** System-level operations, e.g. reindex → `$reindex`. */
  operations?: { name: string; definition: string }[];
  /** Operations on one type, e.g. Patient → everything (`Patient/[id]/$everything`). */
  typeOperations?: Record<string, { name: string; definition: string }[]>;
  /** Canonical CapabilityStatements the server also meets (Bulk Data's). */
  instantiates?: string[];
  /** Implementation guides the server implements (the Subscriptions backport). */
  implementationGuide?: string[];
  /** More for one type's entry (Subscription: the backport's topics, profile, documentation). */
  resourceExtras?: Record<string, Partial<CapabilityStatementRestResource>>;
  /** The SMART authorization server's endpoints, stated as SMART's oauth-uris extension. */
  oauth?: { authorize: string; token: string; revoke?: string };
}

/** The parameters every type has (answered from hfj_resource, the tag tables and hfj_res_ver). */
const COMMON: { name: string; type: 'token' | 'date' | 'uri' | 'special' | 'string'; documentation: string }[] = [
  { name: '_id', type: 'token', documentation: 'The resource id.' },
  { name: '_lastUpdated', type: 'date', documentation: 'When the resource was last changed.' },
  { name: '_tag', type: 'token', documentation: 'A meta.tag.' },
  { name: '_profile', type: 'uri', documentation: 'A meta.profile.' },
  { name: '_security', type: 'token', documentation: 'A meta.security label.' },
  { name: '_source', type: 'uri', documentation: 'meta.source: the system the resource came from.' },
  { name: '_has', type: 'special', documentation: 'Reverse chaining: _has:Type:reference:parameter=value.' },
];

export function buildCapabilityStatement(o: CapabilityOptions): CapabilityStatement {
  const types = [...R4_RESOURCE_TYPES].sort();
  // _revinclude: the reference parameters of every type that may point at each type.
  const revIncludes = new Map<string, string[]>();
  for (const source of types) {
    for (const p of o.params.list(source)) {
      if (p.type !== 'reference') continue;
      const targets = !p.targets?.length || p.targets.includes('Resource') ? types : p.targets;
      for (const t of targets) {
        let list = revIncludes.get(t);
        if (!list) revIncludes.set(t, (list = []));
        list.push(`${source}:${p.code}`);
      }
    }
  }
  const resources: CapabilityStatementRestResource[] = types.map((type) => ({
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
    searchInclude: [
      '*',
      ...o.params
        .list(type)
        .filter((p) => p.type === 'reference')
        .map((p) => `${type}:${p.code}`)
        .sort(),
    ],
    searchRevInclude: (revIncludes.get(type) ?? []).sort(),
    searchParam: [
      ...COMMON,
      ...o.params
        .list(type)
        .map((p) => ({ name: p.code, type: p.type as 'string', ...(p.url ? { definition: p.url } : {}) }))
        .sort((a, b) => a.name.localeCompare(b.name)),
    ],
    ...(o.typeOperations?.[type]?.length ? { operation: o.typeOperations[type] } : {}),
    ...o.resourceExtras?.[type],
  }));
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: o.software,
    implementation: { description: 'Tributary FHIR R4 server', url: o.baseUrl },
    ...(o.instantiates?.length ? { instantiates: o.instantiates } : {}),
    ...(o.implementationGuide?.length ? { implementationGuide: o.implementationGuide } : {}),
    fhirVersion: '4.0.1',
    format: o.formats,
    patchFormat: o.patchFormats,
    rest: [
      {
        mode: 'server',
        resource: resources,
        interaction: o.systemInteractions.map((code) => ({ code: code as 'transaction' })),
        searchParam: COMMON.filter((p) => p.name !== '_has'),
        ...(o.operations?.length ? { operation: o.operations } : {}),
        ...(o.oauth
          ? {
              security: {
                service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] }],
                extension: [
                  {
                    url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
                    extension: Object.entries(o.oauth).map(([url, valueUri]) => ({ url, valueUri })),
                  },
                ],
              },
            }
          : {}),
      },
    ],
  };
}
