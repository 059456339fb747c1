/**
 * The built-in sandbox health systems: simulated EHRs served by Tributary itself, so that the
 * whole connect-and-sync path runs on one machine with no internet. Each has its own FHIR base
 * (`/sandbox/{name}/fhir/r4`), its own patients with usernames and passwords, its records (from
 * src/sandbox/generate.ts, deterministic from the seed), and a fixed id in the directory. They
 * differ where real EHRs differ: how their client (Tributary) must authenticate.
 */

import type { GeneratedSystem, GenerateOptions, VendorVariations } from './generate.ts';
import { ATHENA_SYSTEM } from './vendors/athena.ts';
import { BLUEBUTTON_SYSTEM } from './vendors/bluebutton.ts';
import { ECW_SYSTEM } from './vendors/ecw.ts';
import { EPIC_SYSTEM } from './vendors/epic.ts';
import { MEDITECH_SYSTEM } from './vendors/meditech.ts';
import { ORACLE_SYSTEM } from './vendors/oracle.ts';

export type SandboxAuth = 'none' | 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

export interface SandboxDefinition {
  /** The URL segment: `/sandbox/{name}/fhir/r4`. */
  name: string;
  /** The system's name, shown on its sign-in page and in the directory. */
  title: string;
  /** Its id in the directory (and in `/connect/system/clinical/{id}`). */
  directoryId: string;
  /** Tributary's client_id at this system. */
  clientId: string;
  /** How Tributary authenticates at its token endpoint: a public client (PKCE only), a secret one way, or its own key (private_key_jwt). */
  auth: SandboxAuth;
  /** Whether it serves `Patient/[id]/$everything` (many EHRs do not: then a client searches type by type). */
  everything: boolean;
  seed: string;
  /** Prefix of its resource ids (distinct per system). */
  idPrefix: string;
  patients: number;
  /** Where the system is, for the directory. */
  city: string;
  state: string;
  zip: string;
  /**
   * A simulated vendor (src/sandbox/vendors/): the profile its public base behaves as. Absent:
   * Tributary's own behaviour at `/sandbox/{name}/fhir/r4`. The fields below are a vendor's.
   */
  vendor?: string;
  /** The directory's vendor column, e.g. "Epic (simulated)". */
  vendorLabel?: string;
  /** The public FHIR base, a path under BASE_URL. */
  basePath?: string;
  /** Its access tokens' lifetime (else SANDBOX_ACCESS_TOKEN_SECONDS). */
  accessTokenSeconds?: number;
  /** Whether a refresh gives a new refresh token (default true). */
  refreshRotates?: boolean;
  /** The types it serves: Tributary's registration asks `patient/{type}.read` for each. */
  types?: readonly string[];
  /** The types its app grants of those (default all of `types`). */
  grants?: readonly string[];
  /** Years of history (at most SANDBOX_YEARS). */
  years?: number;
  /** Generator options for its records (src/sandbox/generate.ts). */
  generate?: { readonly vendor?: Readonly<VendorVariations> };
  /** Its records, when not those of generateSystem (Blue Button's payer records). */
  records?: (o: GenerateOptions) => GeneratedSystem;
  /** Its stated request limit, for the directory (eClinicalWorks: 250 a minute). */
  rateLimitPerMinute?: number;
}

export const DEFAULT_SANDBOXES: readonly SandboxDefinition[] = Object.freeze([
  {
    name: 'north-valley',
    title: 'North Valley Health (sandbox)',
    directoryId: 'sandbox-north-valley',
    clientId: 'tributary-north-valley',
    auth: 'client_secret_basic',
    everything: true,
    seed: 'north-valley',
    idPrefix: 'nv',
    patients: 10,
    city: 'Minneapolis',
    state: 'MN',
    zip: '55401',
  },
  {
    name: 'lakeside',
    title: 'Lakeside Medical Group (sandbox)',
    directoryId: 'sandbox-lakeside',
    clientId: 'tributary-lakeside',
    auth: 'none',
    everything: false,
    seed: 'lakeside',
    idPrefix: 'ls',
    patients: 10,
    city: 'Madison',
    state: 'WI',
    zip: '53703',
  },
  EPIC_SYSTEM,
  ORACLE_SYSTEM,
  ECW_SYSTEM,
  ATHENA_SYSTEM,
  BLUEBUTTON_SYSTEM,
  MEDITECH_SYSTEM,
]);
