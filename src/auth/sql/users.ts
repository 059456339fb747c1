/** Fixed SQL statements of an app's users (trb_user). */
import type { Sql } from '../../storage/sql.ts';

export const insertUser = (appId: number, appUserId: string): Sql => ({
  text: 'INSERT INTO trb_user (app_id, app_user_id) VALUES ($1, $2) ON CONFLICT (app_id, app_user_id) DO NOTHING RETURNING id, app_id, app_user_id, active',
  values: [appId, appUserId],
});

export function listUsers(appId: number, appUserId: string | null, oneupUserId: string | null, offset: number, limit: number): Sql {
  return {
    text: /* SQL */ `SELECT id, app_id, app_user_id, active FROM trb_user WHERE app_id = $1 AND ($2::text IS NULL OR app_user_id = $2) AND ($3::bigint IS NULL OR id = $3)
       ORDER BY id OFFSET $4 LIMIT $5`,
    values: [appId, appUserId, oneupUserId, offset, limit],
  };
}

export const renameUser = (appId: number, userId: string, appUserId: string): Sql => ({
  text: 'UPDATE trb_user SET app_user_id = $3 WHERE app_id = $1 AND id = $2 RETURNING id, app_id, app_user_id, active',
  values: [appId, userId, appUserId],
});

export const setPassword = (appId: number, userId: string, username: string, passwordHash: string): Sql => ({
  text: 'UPDATE trb_user SET username = $3, password_hash = $4 WHERE app_id = $1 AND id = $2',
  values: [appId, userId, username, passwordHash],
});

export const userByUsername = (appId: number, username: string): Sql => ({
  text: 'SELECT id, app_id, app_user_id, active, password_hash FROM trb_user WHERE app_id = $1 AND username = $2',
  values: [appId, username],
});
