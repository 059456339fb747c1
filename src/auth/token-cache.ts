/**
 * Valid access tokens remembered in this process (at most ACCESS_CACHE_MS), only while it hears
 * every revocation (see `listen`). One instance per AuthStore.
 */
import type pg from 'pg';
import { listenRevoked } from './sql/tokens.ts';
import type { Access } from './tokens.ts';

/** Valid access tokens are remembered this long at most (and never past their expiry). */
const ACCESS_CACHE_MS = 60_000;
const ACCESS_CACHE_MAX = 100_000;

export class TokenCache {
  private readonly entries = new Map<string, { access: Access; until: number }>();
  /** Moves on at every revocation heard: a lookup begun before one is not kept. */
  private generation = 0;
  private listening = false;

  /** The remembered access of a token's hash (hex); undefined when none, or when not listening. */
  get(key: string): Access | undefined {
    if (!this.listening) return undefined;
    const hit = this.entries.get(key);
    return hit && hit.until > Date.now() ? hit.access : undefined;
  }

  /** Taken before a lookup, given back to `keep` after it. */
  mark(): number {
    return this.generation;
  }

  /** Remembers a lookup's answer, unless a revocation was heard since `mark` (the answer may predate it). */
  keep(key: string, found: { access: Access; expiresAt: number }, mark: number): void {
    if (!this.listening || mark !== this.generation) return;
    if (this.entries.size >= ACCESS_CACHE_MAX) this.entries.clear();
    this.entries.set(key, { access: found.access, until: Math.min(found.expiresAt, Date.now() + ACCESS_CACHE_MS) });
  }

  /** Everything remembered is dropped (a revocation, here or heard). */
  forget(): void {
    this.generation++;
    this.entries.clear();
  }

  /**
   * Keeps valid access tokens in memory (at most ACCESS_CACHE_MS) while this process hears every
   * revocation: a dedicated connection LISTENs to trb_auth, on which each revocation, in any
   * process, NOTIFYs as it commits; each notification empties the memory. Without the
   * connection (lost, or never made) every check reads the database. Answers how to stop.
   */
  async listen(pool: pg.Pool): Promise<() => Promise<void>> {
    const client = await pool.connect();
    const lost = () => {
      this.listening = false;
      this.forget();
    };
    client.on('notification', () => this.forget());
    client.on('error', lost);
    client.on('end', lost);
    await client.query(listenRevoked());
    this.listening = true;
    return async () => {
      lost();
      client.release(true);
    };
  }
}
