/**
 * Background jobs on pg-boss (src/jobs), in the same PostgreSQL, sharing the app's pool. Every
 * queue is declared in src/jobs/queues.ts; the plugins of each area work on theirs.
 */
import fp from 'fastify-plugin';
import { releaseUnusedHeap } from '../src/memory.ts';
import type { FastifyInstance } from 'fastify';
import type { PgBoss } from 'pg-boss';
import { startBoss } from '../src/jobs/boss.ts';
import { EXPORT_EXPIRE_CRON, EXPORT_EXPIRE_QUEUE, EXPORT_QUEUE, REINDEX_QUEUE, type ExportJob, type ReindexJob } from '../src/jobs/queues.ts';
import { runExport } from '../src/export/run.ts';
import { expireExports } from '../src/export/operation.ts';
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
    // Bulk Data exports (src/export), EXPORT_CONCURRENCY at once in this process, and their expiry.
    const exportDeps = { pool: app.pg, repo: app.fhir.repo, search: app.fhir.search, log: app.log, ttlSeconds: app.config.exportTtlHours * 3600 };
    if (app.config.exportConcurrency > 0) {
      let running = 0;
      await boss.work<ExportJob>(EXPORT_QUEUE, { pollingIntervalSeconds: 1, localConcurrency: app.config.exportConcurrency }, async ([job]) => {
        running++;
        try {
          return await runExport(job.data.exportId, exportDeps);
        } finally {
          // A process that serves no requests (`tributary worker`) gives back the heap an export grew as
          // the last one ends (~100 ms); the server does when it is idle (src/memory.ts).
          if (--running === 0 && !app.server.listening) await releaseUnusedHeap().catch(() => false);
        }
      });
    }
    await boss.schedule(EXPORT_EXPIRE_QUEUE, EXPORT_EXPIRE_CRON);
    await boss.work(EXPORT_EXPIRE_QUEUE, async () => expireExports(app.pg));
    app.decorate('jobs', boss);
    app.addHook('onClose', async () => {
      await boss.stop({ graceful: true, timeout: 10_000 });
    });
  },
  { name: 'jobs', dependencies: ['db', 'core'] },
);
