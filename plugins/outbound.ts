/**
 * The one outbound HTTP client of the app (src/net/outbound.ts), as `app.outbound`; closed with the app.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { createOutbound, type Outbound } from '../src/net/outbound.ts';

declare module 'fastify' {
  interface FastifyInstance {
    outbound: Outbound;
  }
}

export default fp(
  async function outbound(app: FastifyInstance) {
    const o = createOutbound({ allow: [] });
    app.decorate('outbound', o);
    app.addHook('onClose', () => o.close());
  },
  { name: 'outbound', dependencies: ['config'] },
);
