/**
 * What the FHIR interactions need from the rest of the core, as interfaces, so that each part is
 * passed in (and tests can build the service from real parts in any combination).
 */
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import type { ResourceIndexes } from '../indexing/types.ts';

export interface ResourceValidator {
  /** Empty when valid; otherwise every problem, each naming its element by FHIRPath. */
  validate(resource: unknown): OperationOutcomeIssue[];
}

export interface ResourceIndexer {
  extract(resource: Resource, partitionId?: number | null): ResourceIndexes;
}

export interface SearchParamInfo {
  code: string;
  type: string;
  /** The FHIRPath expression parts that apply to the resource type (HAPI's src_path for references). */
  paths: string[];
  targets?: string[];
  /** The SearchParameter's canonical URL. */
  url?: string;
  /** A composite parameter's components: the codes of their parameters on the same type. */
  components?: string[];
}

export interface SearchParamLookup {
  get(resourceType: string, code: string): SearchParamInfo | undefined;
  list(resourceType: string): SearchParamInfo[];
}

/**
 * Whose data a request reaches: an app's partition and, within it, one user's resources
 * (`ownerId`) or all of them (`ownerId` null: the app acting for all its users). The storage layer
 * and search put both in the SQL they write.
 */
export interface Scope {
  partitionId: number;
  ownerId: string | null;
  /** The directory's partition out of reach: what a conditional write matches is the app's own. */
  ownOnly?: boolean;
  /**
   * Reads and searches of a user's scope also reach the app's resources that no user owns: a
   * sandbox system's Practitioners, Organizations and Locations, which its patients' records cite.
   */
  withUnowned?: boolean;
}

/** The identity a request acts as. */
export interface RequestContext extends Scope {
  /** Public FHIR base URL for this request, without trailing slash. */
  baseUrl: string;
  requestId?: string;
}

/**
 * The health-system directory's partition. Its Organizations and Endpoints are readable by every
 * app and user: searches of those types, reads by id, includes and chains reach them. Only the
 * directory's importer writes it (src/directory/fhir-view.ts).
 */
export const DIRECTORY_SCOPE: Scope = Object.freeze({ partitionId: -2, ownerId: null });
export const DIRECTORY_TYPES: readonly string[] = Object.freeze(['Endpoint', 'Organization']);
