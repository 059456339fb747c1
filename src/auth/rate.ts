/** The hourly limit of user-management calls per app, counted in PostgreSQL (trb_rate) for every process. */
import type pg from 'pg';
import { countCall as countCallSql } from './sql/rate.ts';

/** Counts one user-management call; false when the app has made `limit` this hour already. */
export async function countCall(pool: pg.Pool, appId: number, limit: number): Promise<{ ok: boolean; retryAfter: number }> {
  const { rows } = await pool.query<{ calls: number; retry: number }>(countCallSql(appId));
  return { ok: rows[0].calls <= limit, retryAfter: Math.max(1, rows[0].retry) };
}
