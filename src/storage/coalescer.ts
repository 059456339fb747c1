/**
 * Requests of a partition, coalesced: while one batch is in flight, the requests that arrive
 * meanwhile queue up and go as the next batch when it ends. A lone request is sent at once (no
 * added wait); under load, one statement serves many requests, which saves a round trip and
 * PostgreSQL's per-statement cost for each of them.
 *
 * Each request stays on its own: if a shared batch fails, its requests are retried one by one, so
 * one bad request never fails another.
 */
interface Waiting<T, R> {
  item: T;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

/** Answers a batch of items of one partition, one result per item, in order. */
export type BatchHandler<T, R> = (partitionId: number, items: T[]) => Promise<R[]>;

export class Coalescer<T, R> {
  private readonly queues = new Map<number, Waiting<T, R>[]>();
  private readonly running = new Set<number>();
  private readonly handle: BatchHandler<T, R>;
  private readonly maxBatch: number;

  constructor(handle: BatchHandler<T, R>, maxBatch: number) {
    this.handle = handle;
    this.maxBatch = maxBatch;
  }

  submit(partitionId: number, item: T): Promise<R> {
    return new Promise((resolve, reject) => {
      let queue = this.queues.get(partitionId);
      if (!queue) this.queues.set(partitionId, (queue = []));
      queue.push({ item, resolve, reject });
      if (!this.running.has(partitionId)) void this.drain(partitionId);
    });
  }

  private async drain(partitionId: number): Promise<void> {
    this.running.add(partitionId);
    try {
      const queue = this.queues.get(partitionId)!;
      while (queue.length) {
        const batch = queue.splice(0, this.maxBatch);
        try {
          const results = await this.handle(partitionId, batch.map((w) => w.item));
          batch.forEach((w, i) => w.resolve(results[i]));
        } catch (err) {
          if (batch.length === 1) {
            batch[0].reject(err);
            continue;
          }
          for (const w of batch) {
            await this.handle(partitionId, [w.item]).then((r) => w.resolve(r[0]), w.reject);
          }
        }
      }
    } finally {
      this.running.delete(partitionId);
    }
  }
}
