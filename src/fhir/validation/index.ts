/**
 * Validation of resources: the official R4 JSON schema, the R4 StructureDefinitions, and the profiles
 * of `profiles/structure-definitions/`. See validator.ts.
 */
export { createValidator } from './validator.ts';
export type { Validator, ValidatorOptions } from './validator.ts';
export { R4_RESOURCE_TYPES } from './resource-types.ts';
