/**
 * The profiles a resource may claim in `meta.profile` and be validated against: the StructureDefinitions
 * (derivation `constraint`, with a snapshot) found in `<profilesDir>/structure-definitions/*.json`.
 *
 * See: https://hl7.org/fhir/R4/profiling.html and https://hl7.org/fhir/R4/resource.html#Meta (meta.profile)
 *
 * Why a profile is registered as a type of its own: @medplum/core's `validateResource(resource, { profile })`
 * parses the StructureDefinition again on every call, ~6 ms for us-core-patient, 25 times the cost of the
 * validation itself. Its parsed form is the same every time, so it is parsed once here and stored in
 * @medplum/core's table of types under the profile's canonical URL (where Medplum itself keeps logical
 * models, whose type is a URL); `validateTypedValue({ type: <that key>, value })` then runs the very same
 * validator on it. The stored copy's `kind` is not 'resource', so `getResourceTypes()` does not list it.
 */
import { getAllDataTypes, loadDataType, tryGetProfile } from '@medplum/core';
import type { StructureDefinition } from '@medplum/fhirtypes';
import { readConformanceResources } from '../conformance-files.ts';

/** A profile loaded for validation. */
export interface LoadedProfile {
  url: string;
  version?: string;
  /** The type it constrains: a resource type for a resource profile. */
  type: string;
  kind: string;
  /** The key of its parsed form in @medplum/core's table of types (see above). */
  typeKey: string;
}

/** The profiles known to this process, found by canonical URL, with or without `|version`. */
export interface ProfileSet {
  find(canonical: string): LoadedProfile | undefined;
  readonly all: readonly LoadedProfile[];
}

/** Folder, under the profiles folder, that holds the StructureDefinitions. */
export const STRUCTURE_DEFINITIONS_FOLDER = 'structure-definitions';

/** A profile this server can validate against: a constraint with a snapshot. */
function isProfile(sd: StructureDefinition): boolean {
  return sd.derivation === 'constraint' && !!sd.snapshot?.element?.length;
}

/** Parses the profile once and makes it validatable by type key; safe to repeat. */
function register(sd: StructureDefinition): LoadedProfile {
  const url = sd.url as string;
  loadDataType(sd);
  const parsed = tryGetProfile(url);
  if (!parsed) throw new Error(`@medplum/core did not index the profile ${url}.`);
  const typeKey = sd.version ? `${url}|${sd.version}` : url;
  getAllDataTypes()[typeKey] = { ...parsed, kind: 'profile' };
  return { url, version: sd.version, type: sd.type as string, kind: sd.kind as string, typeKey };
}

/**
 * Loads every profile of `<profilesDir>/structure-definitions/`: each `.json` file there holds a
 * StructureDefinition, an array of them, or a Bundle of them. Other resources in those files are ignored.
 * A missing folder means no profiles. Call after the base definitions are indexed.
 */
export async function loadProfiles(profilesDir: string): Promise<ProfileSet> {
  const found = await readConformanceResources<StructureDefinition>(profilesDir, STRUCTURE_DEFINITIONS_FOLDER, 'StructureDefinition');
  const byCanonical = new Map<string, LoadedProfile>();
  const all: LoadedProfile[] = [];
  for (const { file, resource: sd } of found) {
    if (!isProfile(sd)) continue;
    if (!sd.url) throw new Error(`A StructureDefinition in ${file} has no url.`);
    const profile = register(sd);
    all.push(profile);
    byCanonical.set(profile.typeKey, profile);
    // The URL alone names the latest loaded version, as a canonical without `|version` does.
    byCanonical.set(profile.url, profile);
  }
  return {
    all,
    // A canonical with `|version` names that version only: another version is not the profile claimed.
    find: (canonical) => byCanonical.get(canonical),
  };
}
