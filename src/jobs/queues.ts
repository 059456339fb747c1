/**
 * Every background queue, with its payload and its options, in one place. pg-boss keeps them in
 * the schema `pgboss` of the app's own database; any number of processes share them.
 *
 * See: https://timgit.github.io/pg-boss/#/./api/queues
 */
import type { PgBoss, Queue, SendOptions } from 'pg-boss';
import type { WebhookEvent } from '../sync/webhooks.ts';

/** `$reindex` (src/search/reindex.ts): the index rows of stored resources, recomputed in batches. */
export const REINDEX_QUEUE = 'reindex';
export interface ReindexJob {
  partitionId: number;
  /** Resource types to reindex; all when absent. */
  types?: string[];
}

/** Hourly: expired codes, tokens and sign-in requests removed (src/auth). */
export const EXPIRE_QUEUE = 'expire';
export const EXPIRE_CRON = '17 * * * *';

/** The directory's health systems probed, on DIRECTORY_PROBE_CRON (src/directory/probe.ts). */
export const PROBE_QUEUE = 'directory-probe';

/** One connection's sync (src/sync/run.ts). */
export const SYNC_QUEUE = 'sync';
export interface SyncJob {
  connectionId: string;
}
/**
 * How long a sync job may stay active before pg-boss gives it up (its worker is presumed dead). A
 * job is active only until its run holds the connection's lock (it is completed then): the run's
 * length is not bounded by this, and a worker that dies mid-run holds no queue slot (the stately
 * queue keeps one active job per connection); the next job's run finds the lock free at once.
 */
export const SYNC_EXPIRE_SECONDS = 600;
/**
 * A connection's sync job: at most one waiting for each connection (the stately queue with the
 * connection as singleton key), never retried (the next cycle is the retry).
 */
export function syncJob(connectionId: string) {
  return { data: { connectionId } satisfies SyncJob, singletonKey: connectionId, retryLimit: 0, expireInSeconds: SYNC_EXPIRE_SECONDS };
}

/** Every minute: the connections due for a sync queued on SYNC_QUEUE. */
export const SCHEDULE_QUEUE = 'sync-schedule';
export const SCHEDULE_CRON = '* * * * *';

/** One event for an app's webhook (src/sync/webhooks.ts). */
export const WEBHOOK_QUEUE = 'webhook';
export interface WebhookJob {
  appId: number;
  /** The event's webhook-id, the same on every attempt. */
  id: string;
  event: WebhookEvent;
}
/** Tried until the receiver takes it: 1 s, 2 s, 4 s ... apart, 8 times (about 4 minutes). */
export const WEBHOOK_RETRY = { retryLimit: 8, retryDelay: 1, retryBackoff: true, expireInSeconds: 60 } as const satisfies SendOptions;

/** One Bulk Data export (src/export/run.ts): its id in trb_export. */
export const EXPORT_QUEUE = 'export';
export interface ExportJob {
  exportId: string;
}
/**
 * An export's job: retried twice (a process that dies mid-export leaves it active until it expires;
 * the retry starts the export over, its partial output dropped).
 */
export function exportJob(exportId: string) {
  return { data: { exportId } satisfies ExportJob, retryLimit: 2, retryDelay: 5, expireInSeconds: 3600 } as const;
}

/** Every 10 minutes: exports past their expiry removed, their files with them (src/export). */
export const EXPORT_EXPIRE_QUEUE = 'export-expire';
export const EXPORT_EXPIRE_CRON = '*/10 * * * *';

/** The queues and how pg-boss keeps each. */
const QUEUES: Queue[] = [
  { name: REINDEX_QUEUE },
  { name: EXPIRE_QUEUE },
  { name: PROBE_QUEUE },
  { name: SYNC_QUEUE, policy: 'stately' },
  { name: SCHEDULE_QUEUE },
  { name: WEBHOOK_QUEUE },
  { name: EXPORT_QUEUE },
  { name: EXPORT_EXPIRE_QUEUE },
];

/** Creates the queues not yet there (each process at start; creating one that exists is a no-op). */
export async function createQueues(boss: PgBoss): Promise<void> {
  for (const q of QUEUES) await boss.createQueue(q.name, q);
}
