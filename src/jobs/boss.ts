/**
 * pg-boss on the app's pool, in the schema `pgboss`, with every queue of src/jobs/queues.ts.
 *
 * pg-boss 11 began a new schema (version 25) that no release migrates into from pg-boss 10's
 * (version 24), which Tributary used before. A store that has the old schema keeps its jobs: the
 * schema is set aside as `pgboss_v10`, the current one is made, the jobs still waiting are queued
 * again with their ids and data, and the old schema is dropped. Scheduled jobs are not carried
 * over (every start schedules its crons again) nor are jobs finished or failed (history only).
 */
import { PgBoss } from 'pg-boss';
import type pg from 'pg';
import type { FastifyBaseLogger } from 'fastify';
import { inTransaction } from '../storage/transaction.ts';
import { createQueues } from './queues.ts';
import { jobStatements as sql } from './sql.ts';

export const SCHEMA = 'pgboss';
const OLD_SCHEMA = 'pgboss_v10';
/** The schema version of pg-boss 10. */
const V10 = 24;
/** An arbitrary constant naming the upgrade's lock (several processes may start at once). */
const UPGRADE_LOCK_KEY = 7_305_511_205;

export async function startBoss(pool: pg.Pool, log: FastifyBaseLogger): Promise<PgBoss> {
  const setAside = await setAsideV10(pool);
  if (setAside) log.warn({ schema: OLD_SCHEMA }, 'job queue: the pg-boss 10 schema was set aside; its waiting jobs are carried over');
  const boss = new PgBoss({ db: { executeSql: (text: string, values?: unknown[]) => pool.query(text, values) }, schema: SCHEMA });
  boss.on('error', (err: unknown) => log.error({ err: String(err) }, 'job queue error'));
  await boss.start();
  await createQueues(boss);
  const carried = await carryOver(pool, boss);
  if (carried !== undefined) log.warn({ jobs: carried }, 'job queue: waiting jobs carried over from pg-boss 10');
  return boss;
}

/** Renames a pg-boss 10 schema out of the way; true when this process did so. */
async function setAsideV10(pool: pg.Pool): Promise<boolean> {
  return inTransaction(pool, async (client) => {
    await client.query(sql.lock(UPGRADE_LOCK_KEY));
    const { rows: found } = await client.query<{ found: boolean }>(sql.versionTableExists(SCHEMA));
    if (!found[0].found) return false;
    const { rows } = await client.query<{ version: number }>(sql.schemaVersion(SCHEMA));
    if (rows[0]?.version !== V10) return false;
    await client.query(sql.renameSchema(SCHEMA, OLD_SCHEMA));
    return true;
  });
}

/**
 * Queues again the jobs of a set-aside pg-boss 10 schema that were waiting, then drops it; the
 * number carried, or undefined when there was none. One process does it, under the lock; one
 * that dies between the two steps leaves the schema, and the next start carries it over again
 * (a webhook receiver may then hear an event twice, with the same id, as it may on any retry).
 */
async function carryOver(pool: pg.Pool, boss: PgBoss): Promise<number | undefined> {
  return inTransaction(pool, async (client) => {
    await client.query(sql.lock(UPGRADE_LOCK_KEY));
    const { rows: exists } = await client.query<{ found: boolean }>(sql.schemaExists(OLD_SCHEMA));
    if (!exists[0].found) return undefined;
    const { rows } = await client.query<V10Job>(sql.waitingV10Jobs(OLD_SCHEMA));
    const queues = new Set((await boss.getQueues()).map((q) => q.name));
    const byQueue = Map.groupBy(
      rows.filter((j) => queues.has(j.name)),
      (j) => j.name,
    );
    let carried = 0;
    for (const [name, jobs] of byQueue) {
      for (let i = 0; i < jobs.length; i += 1000) {
        const ids = await boss.insert(name, jobs.slice(i, i + 1000).map(toInsert));
        carried += ids?.length ?? 0;
      }
    }
    await client.query(sql.dropSchema(OLD_SCHEMA));
    return carried;
  });
}

interface V10Job {
  id: string;
  name: string;
  data: object | null;
  priority: number;
  retry_limit: number;
  retry_delay: number;
  retry_backoff: boolean;
  start_after: Date;
  singleton_key: string | null;
  expire_seconds: number;
}

function toInsert(j: V10Job) {
  return {
    id: j.id,
    data: j.data ?? {},
    priority: j.priority,
    retryLimit: j.retry_limit,
    retryDelay: j.retry_delay,
    retryBackoff: j.retry_backoff,
    startAfter: j.start_after,
    singletonKey: j.singleton_key ?? undefined,
    expireInSeconds: Math.max(1, j.expire_seconds),
  };
}
