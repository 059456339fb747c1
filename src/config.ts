/**
 * Configuration: the only module that reads the environment (server.ts passes it in).
 * Every setting is documented in README.md's settings table; keep the two in step.
 */
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_SANDBOXES, type SandboxDefinition } from './sandbox/systems.ts';
import { parseAllow } from './net/outbound.ts';

export interface Config {
  port: number;
  host: string;
  /** Public base URL of the server, without a trailing slash (used in Location headers and links). */
  baseUrl: string;
  /** A PostgreSQL URL; when absent, an embedded PostgreSQL runs in `dataDir`. */
  databaseUrl: string | undefined;
  dataDir: string;
  embeddedPgPort: number;
  /** shared_buffers of the embedded PostgreSQL, in MB. */
  embeddedPgSharedBuffersMB: number;
  dbPoolSize: number;
  /**
   * Longest a statement of the server's pools may run, in ms (PostgreSQL's statement_timeout; 0:
   * no limit). A search past it is cancelled and answered 504, so no request holds a connection
   * for minutes; jobs that need longer (migrations, the directory import) lift it for themselves.
   */
  dbStatementTimeoutMs: number;
  /**
   * Longest a connection may sit idle inside an open transaction, in ms (PostgreSQL's
   * idle_in_transaction_session_timeout; 0: no limit): past it the server ends the session and
   * its locks are released, whatever the process holding it does.
   */
  dbIdleInTransactionTimeoutMs: number;
  logLevel: string;
  /** Largest request body accepted, in bytes (413 above it). */
  bodyLimit: number;
  /** Profiles and SearchParameters loaded at start. */
  profilesDir: string;
  /**
   * `required`: every FHIR request needs an app's or a user's credentials (401 otherwise).
   * `off`: requests without credentials act as the built-in app (partition 0) with access to all
   * of it, for local development and the benches; requests with credentials are checked as usual.
   */
  fhirAuth: 'required' | 'off';
  /** The key of the admin API (`Authorization: Bearer <key>`); unset: no admin API. */
  adminKey: string | undefined;
  /** User-management calls an app may make per hour (then 429). */
  userApiRateLimit: number;
  /**
   * Requests one client address, and one client_id, may make to the token endpoints
   * (/oauth2/token, introspect, revoke) per minute, counted in each server process (then 429).
   */
  tokenRateLimit: number;
  /**
   * Failed SMART sign-ins from one client address within 15 minutes before the address is locked
   * for a while (whatever usernames it tries); 0: no limit per address (behind a proxy every
   * person shares its address). One username is always locked after 5.
   */
  signinAddressFailures: number;
  /** Import the shipped health-system directory at start when these lists were not imported yet (by their content hash). */
  directoryAutoload: boolean;
  /** When to probe every system's status (a cron expression, e.g. `0 3 * * *`); unset: never. */
  directoryProbeCron: string | undefined;
  /** Serve the built-in sandbox health systems (simulated EHRs with test patients). */
  sandboxes: boolean;
  /** The lifetime of a sandbox system's access tokens, in seconds (short, as some EHRs issue). */
  sandboxAccessTokenSeconds: number;
  /** Years of history of each sandbox patient (about 50 resources a year; 20 gives ~1,000). */
  sandboxYears: number;
  /** Which sandbox systems (the built-in two; tests add others). Not read from the environment. */
  sandboxSystems: readonly SandboxDefinition[];
  /**
   * The AES-256 key that encrypts health systems' tokens and client secrets at rest (32 bytes);
   * unset: with the embedded PostgreSQL, a key file made once in the data folder; with
   * DATABASE_URL, nothing can be encrypted (every process must share one key: set it).
   */
  encryptionKey: Buffer | undefined;
  /**
   * Old encryption keys (ENCRYPTION_KEYS_PREVIOUS, comma-separated, 64 hex characters each): they
   * open what they sealed and verify what they signed, never seal; `tributary keys rotate`
   * re-seals everything under ENCRYPTION_KEY, after which they can be dropped.
   */
  encryptionKeysPrevious: Buffer[];
  /**
   * The demo app (`/demo`): `loopback` answers requests from this machine only (no forwarding
   * proxy in between), `on` anyone, `off` nobody. Served only with the sandbox systems.
   */
  demo: 'on' | 'loopback' | 'off';
  /**
   * Whether the sandbox systems (their FHIR bases, their sign-in, their fault switches) answer
   * requests from other machines; false: from this machine only (no forwarding proxy in between).
   */
  sandboxesPublic: boolean;
  /** A JSON file of Tributary's client registrations at health systems, read at every start. */
  clientRegistrationsFile: string | undefined;
  /** DEDUP_RULES_FILE: a JSON file of de-duplication's rule settings (src/dedup/rules.ts), over the defaults. */
  dedupRulesFile: string | undefined;
  /** Run the sync workers in this process (the API and the workers may also run apart). */
  syncWorkers: boolean;
  /** How often connections are synced: every this many minutes, a due connection is queued. */
  syncIntervalMinutes: number;
  /** Sync jobs one process runs at once. */
  syncConcurrency: number;
  /** Requests one process sends to one health system at once, and a second at most. */
  syncSystemConcurrency: number;
  /** Requests a second to one health system from every process together, when the directory states no limit of its own. */
  syncSystemRate: number;
  /** A note's attachment (Binary) larger than this is recorded as too large, not fetched. */
  syncAttachmentMaxBytes: number;
  /** Attachments one run fetches at most (the rest come in later runs). */
  syncAttachmentsPerRun: number;
  /** Subtracted from the sync's own fetch time to make a query's checkpoint (seconds). */
  syncCheckpointMarginSeconds: number;
  /** A type the system lists `_lastUpdated` for gets a full fetch (the reconciliation sweep) this often (hours). */
  syncSweepHours: number;
  /** A type without `_lastUpdated` gets a full fetch this often, and is skipped in between (minutes). */
  syncFullMinutes: number;
  /**
   * Hosts (`name`, `name:port`) and CIDR ranges (`10.0.0.0/8`) that outbound requests (discovery,
   * the sync, the probe, webhooks) may reach although their addresses are private or loopback
   * (OUTBOUND_ALLOW, comma-separated); everything else private is refused after DNS resolution.
   * With SANDBOXES on, BASE_URL's own host and port is allowed besides (src/net/outbound.ts).
   */
  outboundAllow: string[];
  /**
   * Let webhook URLs be plain http on any host (otherwise https, or http only to a loopback host:
   * development). For a receiver on a private network without TLS; events would cross it readable.
   */
  webhookAllowHttp: boolean;
  /** Webhook deliveries one process sends at once; one app's receiver takes at most a quarter of them. */
  webhookConcurrency: number;
  /** How long a Bulk Data export's files are kept once it completes (EXPORT_TTL_HOURS), then removed. */
  exportTtlHours: number;
  /** Exports one process runs at once (EXPORT_CONCURRENCY; 0: none, another process runs them); more wait in the queue. */
  exportConcurrency: number;
  /**
   * Subscription notifications (src/subscriptions): failed deliveries in a row before the
   * subscription goes to error, and the first wait after a failure (doubling, at most 10 minutes).
   * Not read from the environment (tests shorten it).
   */
  subscriptionRetry: { limit: number; baseMs: number };
  /** How long one notification may take before it counts as failed. Not read from the environment. */
  subscriptionTimeoutMs: number;
}

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}; it is "${raw}".`);
  }
  return n;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const port = int(env, 'PORT', 8080, 0, 65535);
  const host = env.HOST || '0.0.0.0';
  const logLevel = env.LOG_LEVEL || 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}; it is "${logLevel}".`);
  }
  let baseUrl = env.BASE_URL || `http://localhost:${port}`;
  try {
    const u = new URL(baseUrl);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('protocol');
  } catch {
    throw new ConfigError(`BASE_URL must be an http(s) URL such as https://fhir.example.org; it is "${baseUrl}".`);
  }
  baseUrl = baseUrl.replace(/\/+$/, '');
  const databaseUrl = env.DATABASE_URL || undefined;
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must start with postgres:// or postgresql://.');
  }
  return {
    port,
    host,
    baseUrl,
    databaseUrl,
    dataDir: path.resolve(cwd, env.TRIBUTARY_DATA_DIR || 'data'),
    embeddedPgPort: int(env, 'EMBEDDED_PG_PORT', 54329, 1, 65535),
    // PostgreSQL's usual advice: a quarter of the memory (of the container's limit, when there is
    // one), here between 128 MB and 4 GB.
    embeddedPgSharedBuffersMB: int(
      env,
      'EMBEDDED_PG_SHARED_BUFFERS_MB',
      Math.min(4096, Math.max(128, Math.floor(memoryBytes() / 4 / 1048576))),
      16,
      1048576,
    ),
    dbPoolSize: int(env, 'DB_POOL_SIZE', 20, 1, 500),
    dbStatementTimeoutMs: int(env, 'DB_STATEMENT_TIMEOUT_MS', 30_000, 0, 86_400_000),
    dbIdleInTransactionTimeoutMs: int(env, 'DB_IDLE_IN_TRANSACTION_TIMEOUT_MS', 60_000, 0, 86_400_000),
    logLevel,
    bodyLimit: int(env, 'BODY_LIMIT', 16 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    profilesDir: path.resolve(cwd, env.TRIBUTARY_PROFILES_DIR || 'profiles'),
    fhirAuth: oneOf(env, 'FHIR_AUTH', ['required', 'off'] as const, 'required'),
    adminKey: adminKey(env.ADMIN_KEY),
    userApiRateLimit: int(env, 'USER_API_RATE_LIMIT', 300, 1, 10_000_000),
    tokenRateLimit: int(env, 'TOKEN_RATE_LIMIT', 3000, 1, 10_000_000),
    signinAddressFailures: int(env, 'SIGNIN_ADDRESS_FAILURES', 30, 0, 1_000_000),
    directoryAutoload: oneOf(env, 'DIRECTORY_AUTOLOAD', ['true', 'false'] as const, 'true') === 'true',
    directoryProbeCron: cron(env.DIRECTORY_PROBE_CRON),
    sandboxes: oneOf(env, 'SANDBOXES', ['true', 'false'] as const, 'true') === 'true',
    sandboxAccessTokenSeconds: int(env, 'SANDBOX_ACCESS_TOKEN_SECONDS', 600, 10, 86_400),
    sandboxYears: int(env, 'SANDBOX_YEARS', 5, 1, 60),
    sandboxSystems: DEFAULT_SANDBOXES,
    encryptionKey: encryptionKey(env.ENCRYPTION_KEY),
    encryptionKeysPrevious: previousKeys(env.ENCRYPTION_KEYS_PREVIOUS),
    demo: oneOf(env, 'DEMO', ['on', 'loopback', 'off'] as const, 'loopback'),
    sandboxesPublic: oneOf(env, 'SANDBOXES_PUBLIC', ['true', 'false'] as const, 'false') === 'true',
    clientRegistrationsFile: env.CLIENT_REGISTRATIONS_FILE ? path.resolve(cwd, env.CLIENT_REGISTRATIONS_FILE) : undefined,
    dedupRulesFile: env.DEDUP_RULES_FILE ? path.resolve(cwd, env.DEDUP_RULES_FILE) : undefined,
    syncWorkers: oneOf(env, 'SYNC_WORKERS', ['true', 'false'] as const, 'true') === 'true',
    syncIntervalMinutes: int(env, 'SYNC_INTERVAL_MINUTES', 2, 1, 1440),
    syncConcurrency: int(env, 'SYNC_CONCURRENCY', 8, 1, 64),
    syncSystemConcurrency: int(env, 'SYNC_SYSTEM_CONCURRENCY', 4, 1, 64),
    syncSystemRate: int(env, 'SYNC_SYSTEM_RATE', 50, 1, 10_000),
    syncAttachmentMaxBytes: int(env, 'SYNC_ATTACHMENT_MAX_BYTES', 10 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    syncAttachmentsPerRun: int(env, 'SYNC_ATTACHMENTS_PER_RUN', 50, 0, 100_000),
    syncCheckpointMarginSeconds: int(env, 'SYNC_CHECKPOINT_MARGIN_SECONDS', 300, 0, 86_400),
    syncSweepHours: int(env, 'SYNC_SWEEP_HOURS', 24, 0, 24 * 365),
    syncFullMinutes: int(env, 'SYNC_FULL_MINUTES', 60, 0, 60 * 24 * 365),
    outboundAllow: outboundAllow(env.OUTBOUND_ALLOW),
    webhookAllowHttp: oneOf(env, 'WEBHOOK_ALLOW_HTTP', ['true', 'false'] as const, 'false') === 'true',
    webhookConcurrency: int(env, 'WEBHOOK_CONCURRENCY', 16, 1, 256),
    exportTtlHours: int(env, 'EXPORT_TTL_HOURS', 24, 1, 24 * 30),
    exportConcurrency: int(env, 'EXPORT_CONCURRENCY', 1, 0, 16),
    // 1 s, 2 s, 4 s ... 8 times: about 4 minutes, as the webhooks (src/jobs/queues.ts WEBHOOK_RETRY).
    subscriptionRetry: { limit: 8, baseMs: 1000 },
    subscriptionTimeoutMs: 5000,
  };
}

function oneOf<T extends string>(env: Env, name: string, values: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(values as readonly string[]).includes(raw)) throw new ConfigError(`${name} must be one of ${values.join(', ')}; it is "${raw}".`);
  return raw as T;
}

function cron(raw: string | undefined): string | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  if (raw.trim().split(/\s+/).length !== 5)
    throw new ConfigError(`DIRECTORY_PROBE_CRON is a cron expression of five fields (e.g. "0 3 * * *"); it is "${raw}".`);
  return raw.trim();
}

function adminKey(raw: string | undefined): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (raw.length < 32) throw new ConfigError('ADMIN_KEY must be at least 32 characters (for example: openssl rand -hex 32).');
  return raw;
}

function outboundAllow(raw: string | undefined): string[] {
  const entries = (raw ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  try {
    parseAllow(entries);
  } catch (err) {
    throw new ConfigError(
      `OUTBOUND_ALLOW is a comma-separated list of hosts, host:port pairs and CIDR ranges (such as fhir.lan,10.0.0.5:8443,10.1.0.0/16): ${(err as Error).message}.`,
    );
  }
  return entries;
}

function encryptionKey(raw: string | undefined): Buffer | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^[0-9a-fA-F]{64}$/.test(raw)) throw new ConfigError('ENCRYPTION_KEY is 32 bytes as 64 hex characters (for example: openssl rand -hex 32).');
  return Buffer.from(raw, 'hex');
}

function previousKeys(raw: string | undefined): Buffer[] {
  if (raw === undefined || raw.trim() === '') return [];
  return raw.split(',').map((k, i) => {
    if (!/^[0-9a-fA-F]{64}$/.test(k.trim()))
      throw new ConfigError(`ENCRYPTION_KEYS_PREVIOUS is a comma-separated list of keys of 64 hex characters each; key ${i + 1} is not.`);
    return Buffer.from(k.trim(), 'hex');
  });
}

/** The memory this process may use: the machine's, or its cgroup limit when lower. */
function memoryBytes(): number {
  const limit = process.constrainedMemory();
  return limit > 0 && limit < os.totalmem() ? limit : os.totalmem();
}
