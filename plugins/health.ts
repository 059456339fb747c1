/** GET /healthz: the process is up. GET /readyz: the database answers. */
import type { FastifyInstance } from 'fastify';
import { ping } from '../src/storage/statements.ts';

export default async function health(app: FastifyInstance) {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    try {
      await app.pg.query(ping());
      return { status: 'ok' };
    } catch {
      return reply.code(503).send({ status: 'unavailable', reason: 'the database does not answer' });
    }
  });
}
