/** What a sync run needs (its dependencies, its policy) and what it reports (src/sync/run.ts). */
import type pg from 'pg';
import type { Vault } from '../auth/vault.ts';
import type { ClientKey, DiscoveryCache } from '../connect/client.ts';
import type { BulkDeps } from '../fhir/bulk.ts';
import type { ResourceValidator } from '../fhir/ports.ts';
import type { OutboundFetch } from '../net/outbound.ts';
import type { CapabilitiesCache } from './capabilities.ts';
import type { SystemLimiter } from './rate-limit.ts';
import type { SessionOptions, SessionShared } from './session.ts';

export interface SyncPolicy {
  /** Subtracted from our fetch time to make a checkpoint. */
  checkpointMarginSeconds: number;
  /** A type with `_lastUpdated`: a full fetch (the reconciliation sweep) this often. */
  sweepHours: number;
  /** A type without: a full fetch this often, skipped in between. */
  fullMinutes: number;
}
export const DEFAULT_POLICY: SyncPolicy = { checkpointMarginSeconds: 300, sweepHours: 24, fullMinutes: 60 };

export interface SyncDeps extends BulkDeps {
  pool: pg.Pool;
  vault: Vault;
  validator: ResourceValidator;
  clientKey: () => Promise<ClientKey>;
  /** The app's SMART discovery cache (`app.discovery`), the one its connects use. */
  discovery: DiscoveryCache;
  /** This server's origin: plain http is allowed to it (the sandboxes). */
  ownOrigin: string;
  /** The app's outbound fetch (src/net/outbound.ts): every request to the system goes through it. */
  fetch: OutboundFetch;
  session?: SessionOptions;
  /** One per process (plugins/sync.ts): the per-system rate shared by every process. */
  limiter?: SystemLimiter;
  /** One per process (plugins/sync.ts): each system's capabilities, read again after a while. */
  capabilities: CapabilitiesCache;
  /** One per process (plugins/sync.ts): the sessions' per-system slots and refresh times. */
  sessions: SessionShared;
  policy?: SyncPolicy;
  /** Note contents: the largest fetched, and how many a run fetches at most. */
  attachments?: { maxBytes: number; perRun: number };
}

export interface RunSummary {
  runId: string;
  status: 'succeeded' | 'failed' | 'needs_reauth' | 'skipped';
  fetched: number;
  created: number;
  updated: number;
  unchanged: number;
  failed: number;
  /** Records deleted because a full fetch of their type no longer returned them. */
  deleted: number;
  /** `everything` (Patient/$everything) or `per-type` (a search per type). */
  strategy?: 'everything' | 'per-type';
  /** Requests sent to the system, retries included. */
  requests: number;
  error?: string;
}

export interface ConnectionRow {
  app_id: number;
  user_id: string;
  system_id: string;
  patient_id: string | null;
  scope: string;
  access_token_sealed: Buffer;
  refresh_token_sealed: Buffer | null;
  access_expires_at: Date | null;
  name: string;
  resource_url: string;
  vendor: string | null;
}
