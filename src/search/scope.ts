/** The request's partition and user on every hfj_resource a search reads. */
import { DIRECTORY_SCOPE, DIRECTORY_TYPES, type Scope } from '../fhir/ports.ts';
import type { SqlBuilder } from './sql-builder.ts';
import { ownerKey } from '../storage/distribution.ts';
import { ownersOf, reachKeys, type ConditionContext } from './params/context.ts';

/** SQL for "the alias is a live resource of the scope". */
export function scoped(c: ConditionContext, alias: string, types?: readonly string[]): string {
  return inScope(c.b, c.scope, alias, types);
}

/**
 * `alias` (an hfj_resource) is a live resource of the scope: its partition and, when the scope
 * names a user, that user's. When the alias may be one of `types` and one of those is a directory
 * type (Organization, Endpoint), the directory's partition is in reach too, for every app. Every
 * hfj_resource a search reads goes through here.
 */
export function inScope(b: SqlBuilder, scope: Scope, alias: string, types: readonly string[] = []): string {
  // The scope's own partition: its user's records (and the app's own, withUnowned); the directory's come below.
  const owners = ownersOf(b, alias, reachKeys(scope, []));
  const own = `${alias}.partition_id = ${b.param(scope.partitionId)}${owners ? ` AND ${owners}` : ''}`;
  const shared = types.filter((t) => DIRECTORY_TYPES.includes(t));
  // Partitions below 0 are no app's (-1: a request without access; -2: the directory itself).
  if (!shared.length || scope.partitionId < 0 || scope.ownOnly) return `${own} AND ${alias}.res_deleted_at IS NULL`;
  const directory = `${alias}.partition_id = ${DIRECTORY_SCOPE.partitionId} AND ${alias}.owner_id = ${b.param(ownerKey(DIRECTORY_SCOPE.partitionId, null))} AND ${alias}.res_type = ANY(${b.param(shared)}::text[])`;
  return `(${own} OR ${directory}) AND ${alias}.res_deleted_at IS NULL`;
}
