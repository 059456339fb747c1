/**
 * A user's connections to health systems (trb_connection): stored when a sign-in finishes, listed
 * with what their syncs saw, their runs, and forgotten (revoking the tokens at the system when it
 * offers revocation, and with a purge deleting the records that came from it). Only the app's own
 * token for its user (the user-management API's, scope user/*.*) manages them.
 */
import type pg from 'pg';
import type { Vault } from '../auth/vault.ts';
import { parseScopes } from '../auth/scopes.ts';
import type { BulkDeps } from '../fhir/bulk.ts';
import { RUN_LOCK_SPACE } from '../sync/run.ts';
import { clientFor, connectionSealKey, revoke, type ClientDeps, type Tokens } from './client.ts';
import { purgeFrom } from './purge.ts';
import { systemById } from './system.ts';
import * as statements from './sql.ts';

/** Whose connections: the app's user. */
export interface ConnectionOwner {
  appId: number;
  userId: string;
}

/** Every interaction on every type of the user's data, unfiltered: user/*.* (or user/*.cruds). */
export function managesConnections(scope: string): boolean {
  return parseScopes(scope).some((s) => s.context === 'user' && s.type === '*' && s.interactions.size === 5 && s.filter.length === 0);
}

/**
 * Stores the connection of the user to the system with its tokens sealed (bound to the pair), made
 * or made active again (its last error cleared); its id.
 */
export async function saveConnection(pool: pg.Pool, vault: Vault, c: ConnectionOwner & { systemId: string }, tokens: Tokens): Promise<string> {
  const key = connectionSealKey(c.userId, c.systemId);
  const { rows: made } = await pool.query<{ id: string }>(
    statements.upsertConnection(
      c.appId,
      c.userId,
      c.systemId,
      tokens.patient ?? null,
      tokens.scope,
      vault.encrypt(tokens.accessToken, key, 'connection-token'),
      tokens.refreshToken ? vault.encrypt(tokens.refreshToken, key, 'connection-token') : null,
      tokens.expiresAt,
    ),
  );
  return made[0].id;
}

/**
 * The user's connections, with their state (syncing: its run holds the connection's lock, in this
 * database: pg_locks lists every database's, and another Tributary on the server has connections
 * of the same ids; idle, error, needs_reauth), its last run (when, how it ended, its counts; runs
 * skipped because another held the lock aside),
 * when its access token expires, and per type what the sync saw (src/sync/store.ts): `fetched`,
 * `refused` (why: the system's refusal), `not-granted` (the scopes granted do not cover it: not
 * asked), `failed`; the searches of it refused while others answered; its last full fetch; the
 * checkpoints of its queries. An app tells "no data" (fetched, 0) from "not allowed here".
 */
export async function listConnections(pool: pg.Pool, who: ConnectionOwner): Promise<unknown[]> {
  const { rows } = await pool.query(statements.connectionsOf(who.appId, who.userId, RUN_LOCK_SPACE));
  return rows;
}

/**
 * The runs of the user's connection `id`, newest first (`limit` of them, before the run `before`
 * when given), each with the OperationOutcome issues of what it skipped; undefined when the
 * connection is not the user's.
 */
export async function connectionRuns(
  pool: pg.Pool,
  who: ConnectionOwner,
  id: string,
  before: string | undefined,
  limit: number,
): Promise<unknown[] | undefined> {
  const mine = (await pool.query(statements.ownConnection(id, who.appId, who.userId))).rowCount;
  if (!mine) return undefined;
  const { rows } = await pool.query<{ run: unknown }>(statements.connectionRuns(id, before ?? null, limit));
  return rows.map((r) => r.run);
}

/** Where a revocation that failed is told. */
export interface WarnLog {
  warn(obj: object, msg: string): void;
}

/**
 * Forgets the user's connection `id`, revoking its tokens at the system when it offers revocation
 * (best effort: the connection is forgotten whether or not the system takes it), and with `purge`
 * deleting the user's records that came from the system. Undefined when it is not the user's.
 */
export async function disconnect(
  deps: ClientDeps & { bulk: BulkDeps },
  who: ConnectionOwner,
  id: string,
  purge: boolean,
  log: WarnLog,
): Promise<{ revoked: boolean; purged: number } | undefined> {
  const { rows } = await deps.pool.query<{ system_id: string; user_id: string; access_token_sealed: Buffer; refresh_token_sealed: Buffer | null }>(
    statements.deleteConnection(id, who.appId, who.userId),
  );
  const gone = rows[0];
  if (!gone) return undefined;
  const system = (await systemById(deps.pool, gone.system_id))!;
  // Best effort: the connection is forgotten here whether or not the system takes the revocation.
  let revoked = false;
  try {
    const key = connectionSealKey(gone.user_id, gone.system_id);
    const sc = await clientFor(deps, system);
    revoked = await revoke(sc, deps.vault.decrypt(gone.refresh_token_sealed ?? gone.access_token_sealed, key, 'connection-token'));
  } catch (err) {
    log.warn({ system: system.id, err: String(err) }, 'the tokens could not be revoked at the health system');
  }
  let purged = 0;
  if (purge) purged = await purgeFrom(deps.pool, deps.bulk, who.appId, who.userId, system.resource_url);
  return { revoked, purged };
}
