/**
 * Background jobs on pg-boss (src/jobs), in the same PostgreSQL, sharing the app's pool. Every
 * queue is declared in src/jobs/queues.ts; the plugins of each area work on theirs.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { PgBoss } from 'pg-boss';
import { startBoss } from '../src/jobs/boss.ts';
import { REINDEX_QUEUE, type ReindexJob } from '../src/jobs/queues.ts';
import { runReindex } from '../src/search/reindex.ts';

declare module 'fastify' {
  interface FastifyInstance {
    jobs: PgBoss;
  }
}

export default fp(
  async function jobs(app: FastifyInstance) {
    const boss = await startBoss(app.pg, app.log);
    await boss.work<ReindexJob>(REINDEX_QUEUE, { pollingIntervalSeconds: 1 }, ([job]) =>
      runReindex(job, { pool: app.pg, indexer: app.fhir.indexer, log: app.log }),
    );
    app.decorate('jobs', boss);
    app.addHook('onClose', async () => {
      await boss.stop({ graceful: true, timeout: 10_000 });
    });
  },
  { name: 'jobs', dependencies: ['db', 'core'] },
);
