/**
 * The validator of every resource written: is the body a resource of a known R4 type, does it follow the
 * official JSON schema (structure, types, enums, unknown elements), the rules of its StructureDefinition
 * (cardinality, fixed values, invariants) and those of the known profiles it claims.
 *
 * See: https://hl7.org/fhir/R4/validation.html
 */
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { validateWithDefinitions } from './definitions-layer.ts';
import { createSchemaLayer } from './json-schema.ts';
import { ensureBaseDefinitionsIndexed } from './medplum-definitions.ts';
import { loadProfiles } from './profiles.ts';
import { R4_RESOURCE_TYPES } from './resource-types.ts';

export interface ValidatorOptions {
  /** The project's `profiles/` folder; its `structure-definitions/` holds the profiles (see profiles.ts). */
  profilesDir: string;
}

export interface Validator {
  /**
   * Checks one resource. Returns no issue when it is valid, otherwise one error issue per problem found,
   * each naming the bad element by FHIRPath in `expression` (a body that is not a resource has none).
   */
  validate(resource: unknown): OperationOutcomeIssue[];
  /** The canonical URLs (`url|version`) of the profiles loaded from `profilesDir`. */
  readonly profiles: readonly string[];
}

function bodyIssue(code: OperationOutcomeIssue['code'], diagnostics: string): OperationOutcomeIssue[] {
  return [{ severity: 'error', code, diagnostics }];
}

/** Is `inner` the location `outer` or a location inside it (`Patient.name[0]` is inside `Patient.name`)? */
function within(inner: string, outer: string): boolean {
  return inner === outer || (inner.startsWith(outer) && (inner[outer.length] === '.' || inner[outer.length] === '['));
}

/**
 * Loads what validation needs, once per process: the base definitions (shared with every other user of
 * @medplum/core in the process) and the profiles. The JSON schema's validators compile per type on first use.
 */
export async function createValidator(options: ValidatorOptions): Promise<Validator> {
  ensureBaseDefinitionsIndexed();
  const profiles = await loadProfiles(options.profilesDir);
  const schema = createSchemaLayer();

  function validate(resource: unknown): OperationOutcomeIssue[] {
    if (resource === null || typeof resource !== 'object' || Array.isArray(resource)) {
      const found = resource === null ? 'null' : Array.isArray(resource) ? 'an array' : `a ${typeof resource}`;
      return bodyIssue('structure', `A resource must be a JSON object; found ${found}`);
    }
    const resourceType = (resource as { resourceType?: unknown }).resourceType;
    if (resourceType === undefined) return bodyIssue('required', 'A resource must have a resourceType');
    if (typeof resourceType !== 'string' || !R4_RESOURCE_TYPES.has(resourceType)) {
      return bodyIssue('value', `Unknown resource type ${JSON.stringify(resourceType)}: not a FHIR R4 resource type`);
    }

    const structural = schema.validate(resource as { resourceType: string });
    const definitions = validateWithDefinitions(resource as Resource, profiles);
    if (structural.length === 0) {
      if (definitions.failure) {
        // Not the client's fault as far as we know, but nothing vouches for the resource either.
        definitions.issues.push({
          severity: 'error',
          code: 'exception',
          diagnostics: `The resource could not be checked against its definition: ${definitions.failure.message}`,
          expression: [resourceType],
        });
      }
      return definitions.issues;
    }
    // The structure is broken: the definitions' findings add what the schema cannot see (a missing
    // element, a failed invariant) but not a second word on a location the schema already reported.
    const reported = structural.flatMap((i) => i.expression ?? []);
    const extra = definitions.issues.filter((i) => i.expression?.length && !i.expression.some((e) => reported.some((r) => within(e, r))));
    return [...structural, ...extra];
  }

  return { validate, profiles: profiles.all.map((p) => p.typeKey) };
}
