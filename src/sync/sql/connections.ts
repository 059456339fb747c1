/**
 * Fixed SQL statements of the sync about connections (trb_connection): which are due, the one a run
 * syncs, its refreshed tokens, and where its run's event goes.
 */
import type { Sql } from '../../storage/sql.ts';

/** The active connections last synced before `before` (all of them when null). */
export function dueConnections(before: Date | null): Sql {
  return {
    text: /* SQL */ `SELECT id::text FROM trb_connection WHERE status = 'active' AND ($1::timestamptz IS NULL OR coalesce(last_sync_at, created_at) < $1)`,
    values: [before],
  };
}

/** The active connection a run syncs, with its system. */
export function connectionToSync(connectionId: string): Sql {
  return {
    text: /* SQL */ `SELECT c.app_id, c.user_id, c.system_id, c.patient_id, c.scope, c.access_token_sealed, c.refresh_token_sealed, c.access_expires_at, s.name, s.resource_url, s.vendor
     FROM trb_connection c JOIN trb_system s ON s.id = c.system_id WHERE c.id = $1 AND c.status = 'active'`,
    values: [connectionId],
  };
}

/** A connection's refreshed tokens, sealed. */
export function saveRefreshedTokens(connectionId: string, accessSealed: Buffer, refreshSealed: Buffer | null, expiresAt: Date | null): Sql {
  return {
    text: /* SQL */ 'UPDATE trb_connection SET access_token_sealed = $2, refresh_token_sealed = $3, access_expires_at = $4, updated_at = now() WHERE id = $1',
    values: [connectionId, accessSealed, refreshSealed, expiresAt],
  };
}

/** Whom a connection's run event is for: its app, user and system, when the app has a webhook. */
export function webhookTarget(connectionId: string): Sql {
  return {
    text: /* SQL */ `SELECT c.app_id, c.user_id::text, u.app_user_id, c.system_id FROM trb_connection c JOIN trb_user u ON u.id = c.user_id
     WHERE c.id = $1 AND EXISTS (SELECT 1 FROM trb_webhook w WHERE w.app_id = c.app_id)`,
    values: [connectionId],
  };
}
