/**
 * The job area's own statements (pg-boss writes its tables itself): the lock and the schema checks
 * of the upgrade from pg-boss 10 (src/jobs/boss.ts).
 */
import type { Sql } from '../storage/sql.ts';

/** Schema names are constants of this module's callers; checked all the same, never quoted in from input. */
function ident(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`${name} is not a schema name this module makes`);
  return name;
}

export const jobStatements = {
  lock: (key: number): Sql => ({ text: 'SELECT pg_advisory_xact_lock($1)', values: [key] }),
  /** Whether `schema` has pg-boss's version table. */
  versionTableExists: (schema: string): Sql => ({ text: 'SELECT to_regclass($1) IS NOT NULL AS found', values: [`${ident(schema)}.version`] }),
  /** The pg-boss schema version in `schema` (its version table exists). */
  schemaVersion: (schema: string): Sql => ({ text: `SELECT version FROM ${ident(schema)}.version`, values: [] }),
  schemaExists: (schema: string): Sql => ({ text: 'SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS found', values: [schema] }),
  renameSchema: (from: string, to: string): Sql => ({ text: `ALTER SCHEMA ${ident(from)} RENAME TO ${ident(to)}`, values: [] }),
  dropSchema: (schema: string): Sql => ({ text: `DROP SCHEMA ${ident(schema)} CASCADE`, values: [] }),
  /** pg-boss 10's jobs still to run (created, or failed and waiting for a retry). */
  waitingV10Jobs: (schema: string): Sql => ({
    text: /* SQL */ `SELECT id::text, name, data, priority, retry_limit, retry_delay, retry_backoff, start_after, singleton_key,
        extract(epoch FROM expire_in)::int AS expire_seconds
      FROM ${ident(schema)}.job WHERE state IN ('created', 'retry') ORDER BY name, created_on`,
    values: [],
  }),
};
