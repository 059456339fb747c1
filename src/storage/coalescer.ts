/**
 * Requests of a group (a partition and user, say), coalesced: while one batch is in flight, the requests that arrive
 * meanwhile queue up and go as the next batch when it ends. A lone request is sent at once (no
 * added wait); under load, one statement serves many requests, which saves a round trip and
 * PostgreSQL's per-statement cost for each of them.
 *
 * Each request stays on its own: if a shared batch fails, its requests are retried one by one, so
 * one bad request never fails another.
 */
import type { Scope } from '../fhir/ports.ts';
interface Waiting<T, R> {
  item: T;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

/** Answers a batch of items of one group, one result per item, in order. */
export type BatchHandler<G, T, R> = (group: G, items: T[]) => Promise<R[]>;

/** Requests of one scope (partition and user) share batches: the storage layer's reads and creates. */
export const scopeKey = (scope: Scope): string => `${scope.partitionId}/${scope.ownerId ?? '*'}${scope.withUnowned ? '+' : ''}`;

export class Coalescer<G, T, R> {
  private readonly queues = new Map<string, { group: G; queue: Waiting<T, R>[] }>();
  private readonly handle: BatchHandler<G, T, R>;
  private readonly maxBatch: number;
  private readonly keyOf: (group: G) => string;

  /** `keyOf`: requests whose groups have the same key share batches (the group of the first is used). */
  constructor(handle: BatchHandler<G, T, R>, maxBatch: number, keyOf: (group: G) => string) {
    this.handle = handle;
    this.maxBatch = maxBatch;
    this.keyOf = keyOf;
  }

  submit(group: G, item: T): Promise<R> {
    const key = this.keyOf(group);
    return new Promise((resolve, reject) => {
      const entry = this.queues.get(key);
      if (entry) {
        entry.queue.push({ item, resolve, reject });
        return;
      }
      // No queue: nothing of this group is in flight. One is made, and drained until empty.
      this.queues.set(key, { group, queue: [{ item, resolve, reject }] });
      void this.drain(key);
    });
  }

  private async drain(key: string): Promise<void> {
    try {
      const { group, queue } = this.queues.get(key)!;
      while (queue.length) {
        const batch = queue.splice(0, this.maxBatch);
        try {
          const results = await this.handle(
            group,
            batch.map((w) => w.item),
          );
          batch.forEach((w, i) => w.resolve(results[i]));
        } catch (err) {
          if (batch.length === 1) {
            batch[0].reject(err);
            continue;
          }
          for (const w of batch) {
            await this.handle(group, [w.item]).then((r) => w.resolve(r[0]), w.reject);
          }
        }
      }
    } finally {
      // The queue is empty here (nothing runs between the loop's end and this); its removal also
      // says that nothing is in flight, and keeps no entry for every group (user) that ever came.
      this.queues.delete(key);
    }
  }
}
