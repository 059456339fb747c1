/**
 * The repository's write hook for subscriptions (Repository.writeHooks): every write, whoever makes
 * it (the FHIR API, a transaction, the sync, a sandbox load), adds to its own statement
 * - an outbox row per (active subscription, version) that the version matches, found in memory
 *   from the version's index rows (src/subscriptions/registry.ts), so a notification commits with
 *   its write or not at all, and is sent after the commit by a dispatcher;
 * - for Subscription resources written, their registry rows (made, updated or removed).
 * With no subscription in the write's partition and no Subscription written, it adds nothing.
 */
import type { Resource } from '@medplum/fhirtypes';
import type { ResourceIndexer, SearchParamLookup } from '../fhir/ports.ts';
import type { SearchEngine } from '../search/engine.ts';
import type { Db, Repository, WriteHook } from '../storage/repository.ts';
import type { Sql } from '../storage/sql.ts';
import { readDefinition, type SubscriptionLike } from './definition.ts';
import type { ActiveSubscription, SubscriptionRegistry } from './registry.ts';
import * as statements from './sql.ts';

export interface HookDeps {
  registry: SubscriptionRegistry;
  params: SearchParamLookup;
  indexer: ResourceIndexer;
  repo: Pick<Repository, 'readByResIds'>;
  /** Checks, in the deleting transaction, the parts of a criteria the write path cannot evaluate in memory. */
  search: Pick<SearchEngine, 'match'>;
  /** WEBHOOK_ALLOW_HTTP: endpoints may be plain http on any host. */
  allowHttp: boolean;
  /** The server's FHIR bases: absolute references under them are local. */
  baseUrls: string[];
}

export function subscriptionHook(d: HookDeps): WriteHook {
  return async (scope, written, _now, db) => {
    await d.registry.ensure();
    const out: Sql[] = [];
    if (d.registry.has(scope.partitionId)) {
      const rows: statements.OutboxInsert[] = [];
      const deletes = written.filter(
        (w) => !w.item.resource && w.item.existing && !w.item.existing.deleted && d.registry.hearsDeletes(scope.partitionId, w.ownerId, w.item.type),
      );
      // The versions they delete, still current in this transaction (tags and source as a read has them).
      const before = new Map<string, Resource>();
      if (deletes.length) {
        const current = await d.repo.readByResIds(
          db,
          { partitionId: scope.partitionId, ownerId: null },
          deletes.map((w) => w.resId),
        );
        for (const v of current) if (v.json) before.set(v.resId, JSON.parse(v.json) as Resource);
      }
      for (const w of written) {
        if (w.item.type === 'Subscription') continue;
        const deleted = !w.item.resource;
        // A delete is matched by the version it deletes (its index rows are still there in this transaction).
        const r = w.item.resource ?? before.get(w.resId);
        if (!r) continue;
        const interaction = deleted ? 'delete' : w.item.existing && !w.item.existing.deleted ? 'update' : 'create';
        const indexes = (!deleted && w.item.indexes) || d.indexer.extract(r, null);
        for (const m of d.registry.match(scope.partitionId, w.ownerId, w.item.type, w.item.id, indexes, interaction)) {
          // Checked now, not before delivery: once this commits the deleted version is no longer searched.
          if (deleted && m.verify && !(await stillMatched(d, db, m.sub, w.item.id))) continue;
          rows.push({
            subResId: m.sub.resId,
            partitionId: scope.partitionId,
            resId: w.resId,
            type: w.item.type,
            id: w.item.id,
            version: w.version,
            verify: m.verify && !deleted,
            deleted,
          });
        }
      }
      if (rows.length) out.push(statements.insertOutbox(rows));
    }
    const subs = written.filter((w) => w.item.type === 'Subscription');
    if (subs.length) {
      const removed = subs.filter((w) => !w.item.resource).map((w) => w.resId);
      const kept: statements.RegistryRow[] = subs
        .filter((w) => w.item.resource)
        .map((w) => {
          const def = readDefinition(w.item.resource as SubscriptionLike, d.params, d.allowHttp, d.baseUrls);
          return {
            resId: w.resId,
            partitionId: scope.partitionId,
            ownerId: w.ownerId,
            id: w.item.id,
            version: w.version,
            wanted: def.wanted,
            hash: def.hash,
            problem: def.problem ?? null,
            resourceType: def.resourceType,
            criteria: def.criteria,
            topic: def.topic,
            heartbeatSeconds: def.heartbeatSeconds,
            interactions: def.interactions,
            endsAt: def.endsAt,
          };
        });
      if (kept.length) out.push(statements.upsertRegistry(kept));
      if (removed.length) out.push(...statements.removeFromRegistry(removed));
      out.push(statements.bumpRegistry());
    }
    return out;
  };
}

/** Whether the resource, not yet deleted in this transaction, matches the subscription's whole criteria. */
async function stillMatched(d: HookDeps, db: Db, sub: ActiveSubscription, id: string): Promise<boolean> {
  const query = new URLSearchParams(sub.query);
  query.append('_id', id);
  const ctx = { partitionId: sub.partitionId, ownerId: sub.ownerId, ownOnly: true, baseUrl: d.baseUrls[0] };
  const found = await d.search.match(db, ctx, sub.type, query, 1);
  return found.length > 0;
}
