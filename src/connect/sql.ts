/**
 * The connect area's fixed statements (trb_system as a connect reads it, trb_client_registration,
 * trb_connect_state, trb_connection, trb_webhook as its settings endpoints show it, and the records
 * a purge removes), as small functions returning { text, values }.
 */
import type { Sql } from '../storage/sql.ts';

// Directory systems (plugins/connect.ts).

/** A directory system, as a connect needs it. */
export const systemById = (id: string): Sql => ({ text: 'SELECT id, name, resource_url, vendor FROM trb_system WHERE id = $1', values: [id] });

// Client registrations (src/connect/registrations.ts, src/connect/client.ts).

/** The registration for a system: its own, else its vendor's. */
export const registrationFor = (systemId: string, vendor: string | null): Sql => ({
  text: /* SQL */ `SELECT client_id, auth_method, client_secret_sealed, scope, hosts, vendor FROM trb_client_registration
     WHERE system_id = $1 OR vendor = $2 ORDER BY system_id IS NULL LIMIT 1`,
  values: [systemId, vendor],
});

/** Adds or replaces the registration of a system (`key` system_id) or a vendor (`key` vendor). */
export function saveRegistration(
  key: 'system_id' | 'vendor',
  target: string,
  clientId: string,
  authMethod: string,
  secretSealed: Buffer | null,
  scope: string | null,
  hosts: string[] | null,
): Sql {
  // The column is one of two constants, never from input.
  if (key !== 'system_id' && key !== 'vendor') throw new Error(`${String(key)} is not a registration key`);
  return {
    text: /* SQL */ `INSERT INTO trb_client_registration (${key}, client_id, auth_method, client_secret_sealed, scope, hosts) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (${key}) DO UPDATE SET client_id = EXCLUDED.client_id, auth_method = EXCLUDED.auth_method,
       client_secret_sealed = EXCLUDED.client_secret_sealed, scope = EXCLUDED.scope, hosts = EXCLUDED.hosts`,
    values: [target, clientId, authMethod, secretSealed, scope, hosts],
  };
}

/** Every registration, never with its secret. */
export const listRegistrations = (): Sql => ({
  text: /* SQL */ 'SELECT system_id, vendor, client_id, auth_method, scope, hosts, client_secret_sealed IS NOT NULL AS has_secret FROM trb_client_registration ORDER BY system_id NULLS LAST, vendor',
  values: [],
});

export const removeRegistration = (systemId: string | null, vendor: string | null): Sql => ({
  text: 'DELETE FROM trb_client_registration WHERE system_id = $1 OR vendor = $2',
  values: [systemId, vendor],
});

// Pending sign-ins (trb_connect_state: src/connect/sign-in.ts, return-uri.ts, expire.ts).

/** A pending sign-in, bound to its browser (the SHA-256 of its cookie's value), expiring in `seconds`. */
export function insertConnectState(
  stateSha256: Buffer,
  appId: number,
  userId: string,
  systemId: string,
  verifierSealed: Buffer,
  appState: string | null,
  seconds: number,
  browserSha256: Buffer,
): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_connect_state (state_sha256, app_id, user_id, system_id, code_verifier_sealed, app_state, expires_at, browser_sha256)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8)`,
    values: [stateSha256, appId, userId, systemId, verifierSealed, appState, seconds, browserSha256],
  };
}

/** Spends a live pending sign-in of this browser (null: no browser value), returning it. */
export const takeConnectState = (stateSha256: Buffer, browserSha256: Buffer | null): Sql => ({
  text: /* SQL */ 'DELETE FROM trb_connect_state WHERE state_sha256 = $1 AND expires_at > now() AND browser_sha256 = $2 RETURNING app_id, user_id, system_id, code_verifier_sealed, app_state',
  values: [stateSha256, browserSha256],
});

/** Whether a pending sign-in is live (whatever browser it is bound to). */
export const liveConnectState = (stateSha256: Buffer): Sql => ({
  text: 'SELECT 1 FROM trb_connect_state WHERE state_sha256 = $1 AND expires_at > now()',
  values: [stateSha256],
});

/** Where a live pending sign-in's callback sends the person on to: its app's first redirect URI. */
export const connectReturnUri = (stateSha256: Buffer): Sql => ({
  text: /* SQL */ 'SELECT a.redirect_uris[1] AS uri FROM trb_connect_state s JOIN trb_app a ON a.id = s.app_id WHERE s.state_sha256 = $1 AND s.expires_at > now()',
  values: [stateSha256],
});

export const expiredStates = (): Sql => ({ text: /* SQL */ 'DELETE FROM trb_connect_state WHERE expires_at < now()', values: [] });

// Connections (src/connect/connections.ts).

/** The connection of a user to a system, made or made active again with new tokens (sealed). */
export function upsertConnection(
  appId: number,
  userId: string,
  systemId: string,
  patientId: string | null,
  scope: string,
  accessSealed: Buffer,
  refreshSealed: Buffer | null,
  accessExpiresAt: Date | null,
): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_connection (app_id, user_id, system_id, patient_id, scope, access_token_sealed, refresh_token_sealed, access_expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (user_id, system_id) DO UPDATE SET status = 'active', patient_id = EXCLUDED.patient_id, scope = EXCLUDED.scope,
           access_token_sealed = EXCLUDED.access_token_sealed, refresh_token_sealed = EXCLUDED.refresh_token_sealed,
           access_expires_at = EXCLUDED.access_expires_at, last_error = NULL, updated_at = now()
         RETURNING id::text`,
    values: [appId, userId, systemId, patientId, scope, accessSealed, refreshSealed, accessExpiresAt],
  };
}

/** A sync run (`trb_sync_run r`) as the connections API shows it. */
const RUN_JSON = `json_build_object('id', r.id::text, 'started_at', r.started_at, 'finished_at', r.finished_at, 'status', r.status, 'strategy', r.strategy,
  'fetched', r.fetched, 'created', r.created, 'updated', r.updated, 'unchanged', r.unchanged, 'failed', r.failed, 'deleted', r.deleted, 'requests', r.requests, 'error', r.error, 'issues', r.issues)`;

/**
 * The user's connections, with their state, last run, and per type what the sync saw
 * (src/connect/connections.ts says what each part means). `runLockSpace`: the advisory-lock space
 * of sync runs (RUN_LOCK_SPACE of src/sync/run.ts, passed in: that module imports this area's).
 */
export function connectionsOf(appId: number, userId: string, runLockSpace: number): Sql {
  if (!Number.isSafeInteger(runLockSpace)) throw new Error(`${runLockSpace} is not an advisory-lock space`);
  return {
    text: /* SQL */ `SELECT c.id::text, c.system_id, s.name AS system_name, s.resource_url, c.status,
         CASE WHEN c.status = 'needs_reauth' THEN 'needs_reauth'
           WHEN EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND l.granted AND l.objsubid = 2 AND l.classid = ${runLockSpace}::oid AND l.objid = (c.id % 2147483647)::int::oid) THEN 'syncing'
           WHEN r.status IN ('failed', 'running') THEN 'error' ELSE 'idle' END AS state,
         c.patient_id, c.scope, c.created_at, c.access_expires_at, r.started_at AS last_started_at, r.finished_at AS last_finished_at, c.last_sync_at, c.last_success_at, c.last_error,
         CASE WHEN r.id IS NULL THEN NULL ELSE ${RUN_JSON} END AS last_run,
         coalesce((SELECT json_agg(json_build_object('type', t.res_type, 'status', t.status, 'fetched', t.fetched, 'refusal', t.refusal, 'refused_searches', t.refused_variants,
             'error', t.error, 'last_full_at', t.last_full_at, 'updated_at', t.updated_at,
             'checkpoints', (SELECT coalesce(json_object_agg(q.query_key, q.since), '{}') FROM trb_sync_query q
               WHERE q.connection_id = c.id AND q.since IS NOT NULL AND (q.query_key = t.res_type OR q.query_key LIKE t.res_type || '?%')))
             ORDER BY t.res_type)
           FROM trb_sync_type t WHERE t.connection_id = c.id), '[]') AS types
       FROM trb_connection c JOIN trb_system s ON s.id = c.system_id
       LEFT JOIN LATERAL (SELECT * FROM trb_sync_run r WHERE r.connection_id = c.id AND r.status <> 'skipped' ORDER BY r.started_at DESC, r.id DESC LIMIT 1) r ON true
       WHERE c.app_id = $1 AND c.user_id = $2 ORDER BY c.created_at`,
    values: [appId, userId],
  };
}

/** Whether the connection is the user's (of the app). */
export const ownConnection = (id: string, appId: number, userId: string): Sql => ({
  text: 'SELECT 1 FROM trb_connection WHERE id = $1 AND app_id = $2 AND user_id = $3',
  values: [id, appId, userId],
});

/** A connection's runs, newest first, before the run `before` (all when null). */
export const connectionRuns = (id: string, before: string | null, limit: number): Sql => ({
  text: /* SQL */ `SELECT ${RUN_JSON} AS run FROM trb_sync_run r WHERE r.connection_id = $1 AND ($2::bigint IS NULL OR r.id < $2) ORDER BY r.id DESC LIMIT $3`,
  values: [id, before, limit],
});

/** Forgets the user's connection, returning its system and sealed tokens. */
export const deleteConnection = (id: string, appId: number, userId: string): Sql => ({
  text: /* SQL */ 'DELETE FROM trb_connection WHERE id = $1 AND app_id = $2 AND user_id = $3 RETURNING system_id, user_id, access_token_sealed, refresh_token_sealed',
  values: [id, appId, userId],
});

/** The user's live records that came from a system (their meta.source is its FHIR base). */
export const recordsFrom = (appId: number, userId: string, fhirBase: string): Sql => ({
  text: /* SQL */ `SELECT r.res_type, r.fhir_id FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver
       WHERE r.partition_id = $1 AND r.owner_id = $2 AND r.res_deleted_at IS NULL AND v.source_uri = $3`,
  values: [appId, userId, fhirBase],
});

// The app's webhook, as its settings endpoints show it (src/connect/webhook-settings.ts).

export const webhookSettings = (appId: number): Sql => ({
  text: /* SQL */ 'SELECT url, created_at, CASE WHEN previous_until > now() THEN previous_until END AS previous_secret_until FROM trb_webhook WHERE app_id = $1',
  values: [appId],
});

export const deleteWebhook = (appId: number): Sql => ({ text: 'DELETE FROM trb_webhook WHERE app_id = $1', values: [appId] });
