/**
 * Independent single-resource creates, written together: while `maxInFlight` writes of a
 * partition are in flight, the creates that arrive meanwhile queue up and go to PostgreSQL as one
 * statement when one ends. A lone create is written at once (no added wait); under load, each statement carries
 * many resources, which costs PostgreSQL far less per resource than one statement each.
 *
 * Each create stays atomic on its own: if a shared statement fails, its creates are retried one by
 * one, so one bad resource never fails another.
 */
import type pg from 'pg';
import type { Repository, WriteItem, WriteResult } from './repository.ts';

interface Pending {
  item: WriteItem;
  resolve: (r: WriteResult) => void;
  reject: (e: unknown) => void;
}

export class WriteBatcher {
  private readonly queues = new Map<number, Pending[]>();
  private readonly running = new Map<number, number>();
  private readonly repo: Repository;
  private readonly pool: pg.Pool;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;

  constructor(repo: Repository, pool: pg.Pool, options: { maxBatch?: number; maxInFlight?: number } = {}) {
    this.repo = repo;
    this.pool = pool;
    this.maxBatch = options.maxBatch ?? 100;
    this.maxInFlight = options.maxInFlight ?? 1;
  }

  /** Writes a new resource (no lock needed: its id is new) in the next statement of its partition. */
  create(partitionId: number, item: WriteItem): Promise<WriteResult> {
    return new Promise((resolve, reject) => {
      let queue = this.queues.get(partitionId);
      if (!queue) this.queues.set(partitionId, (queue = []));
      queue.push({ item, resolve, reject });
      if ((this.running.get(partitionId) ?? 0) < this.maxInFlight) void this.drain(partitionId);
    });
  }

  private async drain(partitionId: number): Promise<void> {
    this.running.set(partitionId, (this.running.get(partitionId) ?? 0) + 1);
    try {
      const queue = this.queues.get(partitionId)!;
      while (queue.length) {
        const batch = queue.splice(0, this.maxBatch);
        try {
          const results = await this.repo.write(this.pool, partitionId, batch.map((p) => p.item));
          batch.forEach((p, i) => p.resolve(results[i]));
        } catch (err) {
          if (batch.length === 1) {
            batch[0].reject(err);
            continue;
          }
          for (const p of batch) {
            await this.repo.write(this.pool, partitionId, [p.item]).then((r) => p.resolve(r[0]), p.reject);
          }
        }
      }
    } finally {
      const n = (this.running.get(partitionId) ?? 1) - 1;
      if (n) this.running.set(partitionId, n);
      else this.running.delete(partitionId);
    }
  }
}
