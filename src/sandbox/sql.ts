/**
 * The sandbox systems' fixed statements (trb_sandbox, their apps, their rows of the directory,
 * their patients' records), as small functions returning { text, values }.
 */
import type { Sql } from '../storage/sql.ts';

/** A transaction-scoped advisory lock (`key`: a constant of the caller's). */
export const advisoryLock = (key: number): Sql => ({ text: 'SELECT pg_advisory_xact_lock($1)', values: [key] });

// A sandbox's app (src/sandbox/registration.ts).

export const sandboxApp = (name: string): Sql => ({ text: 'SELECT app_id FROM trb_sandbox WHERE name = $1', values: [name] });

export interface SandboxAppSettings {
  redirectUris: string[];
  accessTokenSeconds: number;
  jwks: unknown;
  scopes: string[];
  refreshRotates: boolean;
}

/** The settings of a sandbox's app that follow the configuration (the base URL, the token lifetime, the key). */
export const updateSandboxApp = (appId: number, s: SandboxAppSettings): Sql => ({
  text: 'UPDATE trb_app SET redirect_uris = $2, access_token_seconds = $3, jwks = $4, scopes = $5, refresh_rotates = $6 WHERE id = $1',
  values: [appId, s.redirectUris, s.accessTokenSeconds, s.jwks, s.scopes, s.refreshRotates],
});

export const deleteAppByClientId = (clientId: string): Sql => ({ text: 'DELETE FROM trb_app WHERE client_id = $1', values: [clientId] });

export const insertSandbox = (name: string, appId: number): Sql => ({
  text: 'INSERT INTO trb_sandbox (name, app_id) VALUES ($1, $2)',
  values: [name, appId],
});

// A sandbox's records (src/sandbox/records.ts).

export const sandboxLoaded = (name: string): Sql => ({
  text: 'SELECT loaded_at IS NOT NULL AS loaded FROM trb_sandbox WHERE name = $1',
  values: [name],
});

export const markLoaded = (name: string): Sql => ({ text: 'UPDATE trb_sandbox SET loaded_at = now() WHERE name = $1', values: [name] });

// The sandboxes' rows of the directory (src/sandbox/directory-listing.ts).

export const markWorking = (ids: string[]): Sql => ({
  text: "UPDATE trb_system SET status = 'connection_working', checked_at = now() WHERE id = ANY($1::text[])",
  values: [ids],
});

export const setRateLimit = (id: string, perMinute: number | null): Sql => ({
  text: 'UPDATE trb_system SET rate_limit_per_minute = $2 WHERE id = $1',
  values: [id, perMinute],
});

// The big patient (src/sandbox/big.ts).

/** A session lock named by a string (held by one connection until it unlocks). */
export const sessionLock = (key: string): Sql => ({ text: 'SELECT pg_advisory_lock(hashtextextended($1, 0))', values: [key] });

/** A session lock if it is free at once (`locked`: whether it was taken). */
export const trySessionLock = (key: string): Sql => ({ text: 'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', values: [key] });

export const sessionUnlock = (key: string): Sql => ({ text: 'SELECT pg_advisory_unlock(hashtextextended($1, 0))', values: [key] });

export const liveResourceCount = (appId: number, ownerId: string): Sql => ({
  text: 'SELECT count(*) AS n FROM hfj_resource WHERE partition_id = $1 AND owner_id = $2 AND res_deleted_at IS NULL',
  values: [appId, ownerId],
});

export const passwordSet = (userId: string): Sql => ({
  text: 'SELECT password_hash IS NOT NULL AS done FROM trb_user WHERE id = $1',
  values: [userId],
});

// Changes at the source (src/sandbox/mutate.ts).

export const userByUsername = (appId: number, username: string): Sql => ({
  text: 'SELECT id FROM trb_user WHERE app_id = $1 AND username = $2',
  values: [appId, username],
});

/** A transaction-scoped lock on one patient (their user id). */
export const patientLock = (userId: string): Sql => ({ text: 'SELECT pg_advisory_xact_lock($1::bigint)', values: [userId] });

/** The patient's live records of a type, oldest first, with their stored JSON (the status is in it). */
export const recordsOfType = (appId: number, ownerId: string, type: string, limit: number, offset: number): Sql => ({
  text: /* SQL */ `
  SELECT r.fhir_id, v.res_text_vc
  FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver
  WHERE r.partition_id = $1 AND r.owner_id = $2 AND r.res_type = $3 AND r.res_deleted_at IS NULL
  ORDER BY r.res_id
  LIMIT $4 OFFSET $5`,
  values: [appId, ownerId, type, limit, offset],
});
