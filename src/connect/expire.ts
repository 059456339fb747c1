/**
 * The connect area's part of the hourly sweep (the `expire` queue, src/jobs/queues.ts): pending
 * connect sign-ins past their time.
 */
import type pg from 'pg';
import { expiredStates } from './sql.ts';

/** Removes the connect sign-ins that expired; how many. */
export async function expireConnectStates(pool: pg.Pool): Promise<number> {
  return (await pool.query(expiredStates())).rowCount ?? 0;
}
