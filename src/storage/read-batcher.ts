/**
 * Reads by id, coalesced: while a read query of a partition is in flight, the reads that arrive
 * meanwhile wait and go to PostgreSQL as one query when it ends. A lone read is sent at once; under
 * load, one query answers many reads, which saves a round trip and PostgreSQL's per-query cost
 * for each of them. Reads only: nothing here can change what another request sees.
 */
import type pg from 'pg';
import type { Repository, StoredVersion } from './repository.ts';

interface Waiting {
  type: string;
  id: string;
  resolve: (v: StoredVersion | undefined) => void;
  reject: (e: unknown) => void;
}

export class ReadBatcher {
  private readonly queues = new Map<number, Waiting[]>();
  private readonly running = new Set<number>();
  private readonly repo: Repository;
  private readonly pool: pg.Pool;
  private readonly maxBatch: number;

  constructor(repo: Repository, pool: pg.Pool, maxBatch = 200) {
    this.repo = repo;
    this.pool = pool;
    this.maxBatch = maxBatch;
  }

  read(partitionId: number, type: string, id: string): Promise<StoredVersion | undefined> {
    return new Promise((resolve, reject) => {
      let queue = this.queues.get(partitionId);
      if (!queue) this.queues.set(partitionId, (queue = []));
      queue.push({ type, id, resolve, reject });
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
          const found = await this.repo.readCurrentMany(this.pool, partitionId, batch);
          for (const w of batch) w.resolve(found.get(`${w.type}/${w.id}`));
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
      }
    } finally {
      this.running.delete(partitionId);
    }
  }
}
