import { R4_RESOURCE_TYPES } from './validation/resource-types.ts';

export function isResourceType(type: string): boolean {
  return R4_RESOURCE_TYPES.has(type);
}
