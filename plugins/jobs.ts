/**
 * Background jobs on pg-boss, in the same PostgreSQL (schema `pgboss`), sharing the app's pool.
 * Workers start with the server; any number of processes share the queues.
 * Queues so far: `reindex` (src/search/reindex.ts), `expire` (plugins/auth.ts, hourly).
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import PgBoss from 'pg-boss';
import { REINDEX_QUEUE, reindexBatch, type ReindexJob } from '../src/search/reindex.ts';

declare module 'fastify' {
  interface FastifyInstance {
    jobs: PgBoss;
  }
}

export default fp(
  async function jobs(app: FastifyInstance) {
    const boss = new PgBoss({ db: { executeSql: (text, values) => app.pg.query(text, values) }, schema: 'pgboss' });
    boss.on('error', (err) => app.log.error({ err: String(err) }, 'job queue error'));
    await boss.start();
    await boss.createQueue(REINDEX_QUEUE);
    await boss.work<ReindexJob>(REINDEX_QUEUE, { pollingIntervalSeconds: 1 }, async ([job]) => {
      let after = '0';
      let processed = 0;
      const started = Date.now();
      for (;;) {
        const step = await reindexBatch(app.pg, app.fhir.indexer, job.data, after);
        if (!step) break;
        processed += step.processed;
        after = step.after;
        app.log.info({ job: job.id, processed }, 'reindexing');
      }
      app.log.info({ job: job.id, processed, ms: Date.now() - started }, 'reindex done');
      return { processed };
    });
    app.decorate('jobs', boss);
    app.addHook('onClose', async () => {
      await boss.stop({ graceful: true, wait: true, timeout: 10_000 });
    });
  },
  { name: 'jobs', dependencies: ['db', 'core'] },
);
