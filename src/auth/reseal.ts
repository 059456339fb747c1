/**
 * Re-sealing every sealed value in the database under the current key (`tributary keys rotate`),
 * so that the keys in ENCRYPTION_KEYS_PREVIOUS can then be dropped. Column by column, in batches
 * of rows locked while they are re-sealed (a sync writing new tokens waits for the batch, then
 * writes its own); a value already under the current key is left alone, so running it again
 * does only what is left. A value that opens under no configured key is reported, not changed.
 */
import type pg from 'pg';
import { inTransaction } from '../storage/transaction.ts';
import { sealStoredKeys } from './keys.ts';
import * as sql from './sql/reseal.ts';
import { VaultError, type Purpose, type Vault } from './vault.ts';

/**
 * Where sealed values live, and the context each was sealed with (an SQL expression over the row;
 * it must match what the code passes to vault.encrypt). The connect flow's PKCE verifiers are not
 * here: they are bound to the state, which is kept only hashed, and live 10 minutes.
 * Identifiers are constants of this file, never input.
 */
export const SEALED_COLUMNS: readonly { table: string; column: string; key: string; context: string; purpose: Purpose }[] = [
  { table: 'trb_connection', column: 'access_token_sealed', key: 'id', context: "user_id::text || ':' || system_id", purpose: 'connection-token' },
  { table: 'trb_connection', column: 'refresh_token_sealed', key: 'id', context: "user_id::text || ':' || system_id", purpose: 'connection-token' },
  { table: 'trb_client_registration', column: 'client_secret_sealed', key: 'id', context: 'client_id', purpose: 'registration-secret' },
  { table: 'trb_webhook', column: 'secret_sealed', key: 'app_id', context: "'webhook:' || app_id", purpose: 'webhook-secret' },
  { table: 'trb_webhook', column: 'previous_secret_sealed', key: 'app_id', context: "'webhook:' || app_id", purpose: 'webhook-secret' },
  { table: 'trb_signing_key', column: 'private_jwk_sealed', key: 'kid', context: 'kid', purpose: 'private-key' },
];

export interface ResealProgress {
  /** `table.column` */
  column: string;
  done: number;
  total: number;
}

export interface Unopened {
  column: string;
  row: string;
  reason: string;
}

/** The columns of SEALED_COLUMNS this database has (a column may come with a later migration). */
async function present(pool: pg.Pool) {
  const { rows } = await pool.query<{ t: string; c: string }>(sql.columnsOf(SEALED_COLUMNS.map((s) => s.table)));
  const have = new Set(rows.map((r) => `${r.t}.${r.c}`));
  return SEALED_COLUMNS.filter((s) => have.has(`${s.table}.${s.column}`));
}

/** Values not yet under the current key, per `table.column`. */
export async function countStale(pool: pg.Pool, vault: Vault, columns?: Awaited<ReturnType<typeof present>>): Promise<Record<string, number>> {
  const prefix = vault.currentPrefix;
  const out: Record<string, number> = {};
  for (const s of columns ?? (await present(pool))) {
    const { rows } = await pool.query<{ n: string }>(sql.countStale(s, prefix));
    out[`${s.table}.${s.column}`] = Number(rows[0].n);
  }
  return out;
}

/** Re-seals every value not under the current key; answers those that opened under no configured key. */
export async function resealAll(
  pool: pg.Pool,
  vault: Vault,
  progress: (p: ResealProgress) => void = () => {},
  batch = 500,
): Promise<{ resealed: number; unopened: Unopened[] }> {
  if (!vault.ready)
    throw new VaultError('No encryption key: set ENCRYPTION_KEY (the new key) and ENCRYPTION_KEYS_PREVIOUS (the old ones).', 'no_key');
  await sealStoredKeys(pool, vault); // private keys from before they were sealed
  const prefix = vault.currentPrefix;
  const unopened: Unopened[] = [];
  let resealed = 0;
  const columns = await present(pool);
  const stale = await countStale(pool, vault, columns);
  for (const s of columns) {
    const name = `${s.table}.${s.column}`;
    const total = stale[name];
    let done = 0;
    let last: unknown;
    progress({ column: name, done, total });
    for (;;) {
      const rows = await inTransaction(pool, async (c) => {
        // Keyset paging: a row that does not open is passed over, not read again.
        const { rows } = await c.query<{ k: unknown; ctx: string; sealed: Buffer }>(sql.staleBatch(s, prefix, batch, last));
        for (const r of rows) {
          let plain: string;
          try {
            plain = vault.decrypt(r.sealed, r.ctx, s.purpose);
          } catch (err) {
            if (!(err instanceof VaultError)) throw err;
            unopened.push({ column: name, row: String(r.k), reason: err.message });
            continue;
          }
          await c.query(sql.reseal(s, vault.encrypt(plain, r.ctx, s.purpose), r.k));
          resealed++;
        }
        return rows;
      });
      if (!rows.length) break;
      last = rows.at(-1)!.k;
      done += rows.length;
      progress({ column: name, done, total: Math.max(total, done) });
    }
  }
  return { resealed, unopened };
}
