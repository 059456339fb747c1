/**
 * What is due to sync: the active connections not synced within the interval (a connection never
 * synced counts from its making: its first sync was queued then), queued on SYNC_QUEUE.
 */
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { SYNC_QUEUE, syncJob } from '../jobs/queues.ts';
import * as connections from './sql/connections.ts';

/** Jobs per insert statement. */
const BATCH = 1000;

/**
 * The instant before which a connection's last sync makes it due: the last interval, less a little,
 * so that a run that ended just after the last tick is not skipped a whole interval.
 */
export function dueBefore(intervalMinutes: number, now = Date.now()): Date {
  return new Date(now - intervalMinutes * 60_000 + 10_000);
}

/** Queues the active connections last synced before `before` (all of them without it); how many. */
export async function queueDue(d: { pool: pg.Pool; jobs: PgBoss }, before?: Date): Promise<number> {
  // A connection never synced counts from its making (its first sync was queued then).
  const { rows } = await d.pool.query<{ id: string }>(connections.dueConnections(before ?? null));
  // In statements of 1,000 jobs, not a round trip each.
  for (let i = 0; i < rows.length; i += BATCH)
    await d.jobs.insert(
      SYNC_QUEUE,
      rows.slice(i, i + BATCH).map((r) => syncJob(r.id)),
    );
  return rows.length;
}
