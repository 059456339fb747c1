/**
 * Versioned, idempotent schema migrations, run at start. Several processes may start at once:
 * a transaction-scoped advisory lock makes them take turns, and each applies only what is missing.
 */
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { inTransaction } from './transaction.ts';
import { appliedMigrations, createMigrationTable, migrationLock, recordMigration } from './statements.ts';

const MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');
/** An arbitrary constant naming Tributary's migration lock. */
const MIGRATION_LOCK_KEY = 7_305_511_204;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export function listMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{4}-.*\.sql$/.test(f))
    .sort()
    .map((f) => ({ version: Number(f.slice(0, 4)), name: f.slice(5, -4), sql: fs.readFileSync(path.join(dir, f), 'utf8') }));
}

/**
 * Applies every migration not yet applied; returns the versions it applied. `onStart` hears of
 * each before it runs (one that rebuilds indexes of a large store takes minutes: say so).
 */
export async function migrate(pool: pg.Pool, migrations = listMigrations(), onStart?: (m: Migration) => void): Promise<number[]> {
  const applied: number[] = [];
  await inTransaction(pool, async (client) => {
    await client.query(migrationLock(MIGRATION_LOCK_KEY));
    await client.query(createMigrationTable());
    const done = new Set((await client.query<{ version: number }>(appliedMigrations())).rows.map((r) => r.version));
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      onStart?.(m);
      await client.query(m.sql);
      await client.query(recordMigration(m.version, m.name));
      applied.push(m.version);
    }
  });
  return applied;
}
