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
import type { WriteHook } from '../storage/repository.ts';
import type { Sql } from '../storage/sql.ts';
import { readDefinition, type SubscriptionLike } from './definition.ts';
import type { SubscriptionRegistry } from './registry.ts';
import * as statements from './sql.ts';

export interface HookDeps {
  registry: SubscriptionRegistry;
  params: SearchParamLookup;
  indexer: ResourceIndexer;
  /** WEBHOOK_ALLOW_HTTP: endpoints may be plain http on any host. */
  allowHttp: boolean;
  /** The server's FHIR bases: absolute references under them are local. */
  baseUrls: string[];
}

export function subscriptionHook(d: HookDeps): WriteHook {
  return async (scope, written) => {
    await d.registry.ensure();
    const out: Sql[] = [];
    if (d.registry.has(scope.partitionId)) {
      const rows: statements.OutboxInsert[] = [];
      for (const w of written) {
        const r = w.item.resource;
        // A delete has no index rows to match: subscriptions hear of creates and updates.
        if (!r || w.item.type === 'Subscription') continue;
        const indexes = w.item.indexes ?? d.indexer.extract(r as Resource, null);
        for (const m of d.registry.match(scope.partitionId, w.ownerId, w.item.type, w.item.id, indexes)) {
          rows.push({
            subResId: m.sub.resId,
            partitionId: scope.partitionId,
            resId: w.resId,
            type: w.item.type,
            id: w.item.id,
            version: w.version,
            verify: m.verify,
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
          };
        });
      if (kept.length) out.push(statements.upsertRegistry(kept));
      if (removed.length) out.push(...statements.removeFromRegistry(removed));
      out.push(statements.bumpRegistry());
    }
    return out;
  };
}
