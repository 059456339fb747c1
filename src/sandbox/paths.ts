/**
 * Where a sandbox system answers (its public base, a simulated vendor's internal prefix and token
 * endpoint), and the scopes of a simulated vendor's app and of Tributary's registration there.
 */
import type { SandboxDefinition } from './systems.ts';

const SIGN_IN_SCOPES = ['launch/patient', 'openid', 'fhirUser', 'offline_access'];

/** The public base path of a sandbox system (a vendor's own, else Tributary's style). */
export const publicBasePath = (def: SandboxDefinition): string => def.basePath ?? `/sandbox/${def.name}/fhir/r4`;
export const internalPrefix = (def: SandboxDefinition): string => `/sandbox/${def.name}/internal/fhir/r4`;
export const vendorTokenPath = (def: SandboxDefinition): string => `/sandbox/${def.name}/oauth2/token`;

/**
 * A vendor's scopes (vendors.md "Scopes"): Tributary's registration asks explicit v1 per-type
 * scopes, `patient/{type}.read` for each type the vendor serves, with the sign-in scopes; the
 * vendor's app allows (and so grants) only the types it grants.
 */
export function vendorScopes(def: SandboxDefinition): { registration: string; allowed: string[] } {
  const read = (types: readonly string[]) => types.map((t) => `patient/${t}.read`);
  return {
    registration: [...SIGN_IN_SCOPES, ...read(def.types ?? [])].join(' '),
    allowed: [...SIGN_IN_SCOPES, ...read(def.grants ?? def.types ?? [])],
  };
}
