/** The sandbox records generator's options and output (src/sandbox/generate.ts). */
import type { Resource } from '@medplum/fhirtypes';

export interface GenerateOptions {
  /** Any string; the same seed gives the same records. */
  seed: string;
  /** Number of patients (besides the shared person, see below). */
  patients: number;
  /** Prefix of every resource id of this system, e.g. 'nv' → 'nv-pat-1', keeps ids distinct across systems. FHIR ids: [A-Za-z0-9-.]{1,64}. */
  idPrefix: string;
  /** The health system's name, used for its Organization (the managing organization) and its identifiers' system URIs. */
  systemName: string;
  /** Include the shared person (the same human at every system that includes them, under this system's ids). Default true. */
  sharedPerson?: boolean;
  /** Roughly how many years of history per patient (default 5); more years → more encounters and observations. */
  years?: number;
  /** Ways real vendors' records differ (the simulated vendors' sandboxes), each off by default. */
  vendor?: VendorVariations;
}

/**
 * Ways real vendors' records differ, for the simulated vendors (ehr-behaviour.md). They are applied
 * to each patient's finished record with randomness of their own (from the seed and the patient),
 * so that without them the output is exactly what it was, and with them the rest of it is too.
 * Practice-prefixed ids, as athena's (`a-80000.E-…`, §3 "IDs"), need no option: the idPrefix gives them.
 */
export interface VendorVariations {
  /**
   * The share (0 to 1) of each type's resources whose status is entered-in-error: athena returns
   * such records (§3 "Entered-in-error": 89 of 491 Observations), Oracle too (§2).
   */
  enteredInError?: Partial<Record<'Observation' | 'DiagnosticReport' | 'DocumentReference', number>>;
  /** With enteredInError: an Observation's values removed and its dataAbsentReason `masked` (§2 Oracle "Entered-in-error"). */
  maskEnteredInError?: boolean;
  /**
   * Each note as Binary renditions (owned by the patient) that its DocumentReference's attachments
   * link by a relative `Binary/<id>` url, in these formats, instead of inline text/plain data
   * (§1 Epic "DocumentReference / Binary", §2 Oracle "Binary / notes").
   */
  noteBinaries?: ('text/html' | 'application/pdf')[];
  /**
   * Observations of two more categories: social-history (tobacco smoking status at each check-up)
   * and survey (a PHQ-2 score with each depression screening), which Epic's category fan-out and
   * Oracle's first page reach (§1 "Observation categories", §2 "`_count`").
   */
  moreCategories?: boolean;
  /**
   * The first Procedure of the first ordinary patient (`${idPrefix}-proc-1-1`) without its status,
   * which R4 requires: what makes Oracle fail a whole search with a 500 (§2 "Whole-search failure").
   * Not valid FHIR on purpose; the sandbox writes its records without validation.
   */
  procedureWithoutStatus?: boolean;
}

export interface SandboxPatient {
  /** Stable across systems for the shared person ('shared'), else `${idPrefix}-${n}`. */
  personKey: string;
  /** The login for the sandbox's sign-in page: given name and family name in lowercase letters. Unique within one system. */
  username: string;
  /** The username followed by 2026 (the anchor year): at least 8 characters. */
  password: string;
  /** Every resource of the patient's record: the Patient first, then the rest. */
  resources: Resource[];
}

export interface GeneratedSystem {
  /** Resources outside any patient's compartment that the records reference: the Organization of the system, Practitioners, Locations. */
  shared: Resource[];
  patients: SandboxPatient[];
}

/** The LOINC code the product's docs use for daily steps. */
export const STEPS_LOINC = '66334-4';
