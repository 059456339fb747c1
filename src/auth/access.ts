/**
 * What a bearer access token may do, checked in the database (lookups arriving together share one
 * statement) unless the TokenCache remembers it.
 */
import type pg from 'pg';
import { Coalescer } from '../storage/coalescer.ts';
import { toApp, type AppRow } from './apps.ts';
import { sha256 } from './secrets.ts';
import { accessMany } from './sql/tokens.ts';
import type { TokenCache } from './token-cache.ts';
import type { Access } from './tokens.ts';

type Found = { access: Access; expiresAt: number } | undefined;

export class AccessLookup {
  private readonly pool: pg.Pool;
  private readonly cache: TokenCache;
  private readonly lookups: Coalescer<null, Buffer, Found>;

  constructor(pool: pg.Pool, cache: TokenCache) {
    this.pool = pool;
    this.cache = cache;
    this.lookups = new Coalescer(
      (_none: null, hashes: Buffer[]) => this.many(hashes),
      200,
      () => 'tokens',
    );
  }

  /**
   * What a bearer access token may do, or undefined when it is unknown, expired or revoked. Checked
   * in the database on every request (a revoked token is refused at once, by every process);
   * lookups arriving together share one statement.
   */
  async accessFor(token: string): Promise<Access | undefined> {
    const hash = sha256(token);
    const key = hash.toString('hex');
    const hit = this.cache.get(key);
    if (hit) return hit;
    const mark = this.cache.mark();
    const found = await this.lookups.submit(null, hash);
    // Not kept when a revocation was heard meanwhile: the answer may predate it.
    if (found) this.cache.keep(key, found, mark);
    return found?.access;
  }

  private async many(hashes: Buffer[]): Promise<Found[]> {
    type Row = AppRow & { user_id: string | null; scope: string; token_sha256: Buffer; expires_at: Date };
    const { rows } = await this.pool.query<Row>(accessMany(hashes));
    const found = (r: Row) => ({ access: { app: toApp(r), userId: r.user_id, scope: r.scope }, expiresAt: r.expires_at.getTime() });
    const byHash = new Map(rows.map((r) => [r.token_sha256.toString('hex'), found(r)]));
    return hashes.map((h) => byHash.get(h.toString('hex')));
  }
}
