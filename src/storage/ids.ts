/**
 * Numeric ids from HAPI's pooled sequences (INCREMENT 50): one nextval() reserves the block
 * [value, value + 49] for this process, so most ids cost no round trip and several processes
 * never collide.
 */
import type pg from 'pg';
import { nextValues } from './statements.ts';

const BLOCK = 50;

export class IdAllocator {
  private next = 0n;
  private end = 0n;
  private readonly sequence: string;
  constructor(sequence: string) {
    if (!/^[a-z_]+$/.test(sequence)) throw new Error(`Invalid sequence name: ${sequence}`);
    this.sequence = sequence;
  }

  async take(db: pg.Pool | pg.PoolClient, count: number): Promise<bigint[]> {
    const out: bigint[] = [];
    while (out.length < count) {
      if (this.next >= this.end) {
        const blocks = Math.ceil((count - out.length) / BLOCK);
        const { rows } = await db.query<{ v: string }>(nextValues(this.sequence, blocks));
        // Blocks are not contiguous with each other; use them one after the other.
        for (const r of rows.slice(0, -1)) {
          const start = BigInt(r.v);
          for (let i = 0n; i < BigInt(BLOCK) && out.length < count; i++) out.push(start + i);
        }
        this.next = BigInt(rows[rows.length - 1].v);
        this.end = this.next + BigInt(BLOCK);
      }
      while (this.next < this.end && out.length < count) out.push(this.next++);
    }
    return out;
  }
}
