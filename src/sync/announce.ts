/**
 * Which run is news to the app's webhook, and what its event says: a run that changed something
 * (`sync.succeeded`), failed (`sync.failed`) or found the connection needs the person again
 * (`connection.needs_reauth`). A run that found nothing new (most runs of a cycle), or was skipped,
 * sends nothing and costs no query.
 */
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import type { RunSummary } from './run-types.ts';
import * as connections from './sql/connections.ts';
import { queueEvent, type EventType } from './webhooks.ts';

/** Whether the run is news: it changed something, or it failed. */
export function isNews(run: RunSummary): boolean {
  return !(run.status === 'skipped' || (run.status === 'succeeded' && run.created + run.updated + run.deleted === 0));
}

/** The event a run that is news makes. */
export function eventTypeOf(run: RunSummary): EventType {
  return run.status === 'succeeded' ? 'sync.succeeded' : run.status === 'needs_reauth' ? 'connection.needs_reauth' : 'sync.failed';
}

/**
 * Queues the run's event for the app's webhook, when it has one and the run is news: it changed
 * something, or it failed. A run that found nothing new (most runs of a cycle) sends nothing and
 * costs no query. Whether an event was queued.
 */
export async function announce(d: { pool: pg.Pool; jobs: PgBoss }, connectionId: string, run: RunSummary): Promise<boolean> {
  if (!isNews(run)) return false;
  const { rows } = await d.pool.query<{ app_id: number; user_id: string; app_user_id: string; system_id: string }>(
    connections.webhookTarget(connectionId),
  );
  const c = rows[0];
  if (!c) return false;
  const data = {
    connection_id: connectionId,
    oneup_user_id: Number(c.user_id),
    app_user_id: c.app_user_id,
    system_id: c.system_id,
    run: { ...run },
  };
  await queueEvent(d.jobs, c.app_id, eventTypeOf(run), data);
  return true;
}
