/**
 * The PROBE_QUEUE job (src/jobs/queues.ts), on DIRECTORY_PROBE_CRON: every system's status probed
 * (src/directory/probe.ts), then the FHIR view brought up to date with the statuses that changed.
 */
import type pg from 'pg';
import type { FastifyBaseLogger } from 'fastify';
import type { OutboundFetch } from '../net/outbound.ts';
import { DEFAULT_PROBE, probeSystems } from './probe.ts';

export interface ProbeJobDeps {
  pool: pg.Pool;
  /** The app's outbound fetch (with the operator's allow-list). */
  fetch: OutboundFetch;
  log: FastifyBaseLogger;
  /** Brings the FHIR view up to date (src/directory/view-refresh.ts). */
  updateView(): Promise<void>;
}

export async function runProbe(_job: unknown, deps: ProbeJobDeps): Promise<void> {
  deps.log.info({ statuses: await probeSystems(deps.pool, { ...DEFAULT_PROBE, fetch: deps.fetch }) }, 'health systems probed');
  await deps.updateView();
}
