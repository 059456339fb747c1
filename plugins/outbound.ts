/**
 * The one outbound HTTP client of the app (src/net/outbound.ts), as `app.outbound`; closed with the app.
 * Beside it, `app.discovery`: what the app learned of each health system's SMART configuration,
 * shared by the connects (plugins/connect.ts) and the syncs (plugins/sync.ts).
 * Its allow-list is the operator's (OUTBOUND_ALLOW) and, when this process serves the sandboxes,
 * this server's own host and port (BASE_URL): the sandboxes are health systems on this very origin.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../src/config.ts';
import { createOutbound, type Outbound } from '../src/net/outbound.ts';
import { DiscoveryCache } from '../src/connect/discovery.ts';

declare module 'fastify' {
  interface FastifyInstance {
    outbound: Outbound;
    discovery: DiscoveryCache;
  }
}

/** The allow-list in force for a configuration. */
export function outboundAllow(config: Pick<Config, 'outboundAllow' | 'sandboxes' | 'baseUrl'>): string[] {
  const own = new URL(config.baseUrl);
  const port = own.port || (own.protocol === 'https:' ? '443' : '80');
  return [...config.outboundAllow, ...(config.sandboxes ? [`${own.hostname}:${port}`] : [])];
}

export default fp(
  async function outbound(app: FastifyInstance) {
    const o = createOutbound({ allow: outboundAllow(app.config) });
    app.decorate('outbound', o);
    app.decorate('discovery', new DiscoveryCache());
    app.addHook('onClose', () => o.close());
  },
  { name: 'outbound', dependencies: ['config'] },
);
