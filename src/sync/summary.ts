/** The operators' summary of the sync (GET /admin/sync): the runs started since an instant, summed up, and their commonest errors. */
import type pg from 'pg';
import * as runs from './sql/runs.ts';

/** The runs started since `from` (the last hour without it), and the five commonest errors among them. */
export async function syncSummary(pool: pg.Pool, from?: Date): Promise<Record<string, unknown> & { errors: { error: string; runs: number }[] }> {
  const { rows } = await pool.query(runs.runsSince(from ?? null));
  // The commonest errors, so that a failing cycle says why.
  const { rows: errors } = await pool.query<{ error: string; runs: number }>(runs.commonErrorsSince(from ?? null));
  return { ...rows[0], errors };
}
