/**
 * What the sync runs of one process share: the per-system rate limiter (its state in PostgreSQL,
 * shared by every process), each system's capabilities, and the sessions' per-system slots and
 * refresh times. Made once per app (plugins/sync.ts decorates it) and passed in through SyncDeps.
 */
import type pg from 'pg';
import { CapabilitiesCache } from './capabilities.ts';
import { createSystemLimiter, type SystemLimiter } from './rate-limit.ts';
import { createSessionShared, type SessionShared } from './session.ts';

export interface SyncShared {
  limiter: SystemLimiter;
  capabilities: CapabilitiesCache;
  sessions: SessionShared;
}

export function createSyncShared(pool: pg.Pool, o: { ratePerSecond: number }): SyncShared {
  return { limiter: createSystemLimiter(pool, o), capabilities: new CapabilitiesCache(), sessions: createSessionShared() };
}
