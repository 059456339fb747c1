/**
 * The users of an app (1upHealth's user-management API makes them) and their SMART sign-in, in
 * PostgreSQL (migration 0003). Passwords are stored as scrypt hashes.
 */
import type pg from 'pg';
import { hashPassword, verifyPassword } from './secrets.ts';
import * as sql from './sql/users.ts';

export interface User {
  /** 1upHealth's oneup_user_id: our numeric id, as a string. */
  id: string;
  appId: number;
  appUserId: string;
  active: boolean;
}

type UserRow = { id: string; app_id: number; app_user_id: string; active: boolean };
const toUser = (r: UserRow): User => ({ id: r.id, appId: r.app_id, appUserId: r.app_user_id, active: r.active });

/** A new user of the app; undefined when the app already has one with this app_user_id. */
export async function createUser(pool: pg.Pool, appId: number, appUserId: string): Promise<User | undefined> {
  const { rows } = await pool.query<UserRow>(sql.insertUser(appId, appUserId));
  return rows[0] && toUser(rows[0]);
}

export async function listUsers(
  pool: pg.Pool,
  appId: number,
  filter: { appUserId?: string; oneupUserId?: string },
  offset: number,
  limit: number,
): Promise<User[]> {
  if (filter.oneupUserId !== undefined && !/^\d{1,18}$/.test(filter.oneupUserId)) return [];
  const { rows } = await pool.query<UserRow>(sql.listUsers(appId, filter.appUserId ?? null, filter.oneupUserId ?? null, offset, limit));
  return rows.map(toUser);
}

export async function findUser(pool: pg.Pool, appId: number, by: { appUserId?: string; oneupUserId?: string }): Promise<User | undefined> {
  return (await listUsers(pool, appId, by, 0, 1))[0];
}

/** Changes a user's app_user_id; 'exists' when another user of the app has the new one. */
export async function renameUser(pool: pg.Pool, appId: number, userId: string, appUserId: string): Promise<User | 'exists' | undefined> {
  try {
    const { rows } = await pool.query<UserRow>(sql.renameUser(appId, userId, appUserId));
    return rows[0] && toUser(rows[0]);
  } catch (err) {
    if ((err as { code?: string }).code === '23505') return 'exists';
    throw err;
  }
}

/** Sets the user's sign-in; false when another user of the app has the username. */
export async function setPassword(pool: pg.Pool, appId: number, userId: string, username: string, password: string): Promise<boolean> {
  try {
    await pool.query(sql.setPassword(appId, userId, username, await hashPassword(password)));
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === '23505') return false;
    throw err;
  }
}

/**
 * The user whose username and password these are, or undefined. An unknown username, a user
 * without a password and an inactive one verify the password against a dummy hash of the same
 * cost (`dummyHash`, made once by the caller): the time taken never tells whether the username exists.
 * See: https://cheatsheetseries.owasp.org/cheatsheets/Authentication_Cheat_Sheet.html#authentication-responses
 */
export async function checkPassword(
  pool: pg.Pool,
  dummyHash: () => Promise<string>,
  appId: number,
  username: string,
  password: string,
): Promise<User | undefined> {
  const { rows } = await pool.query<UserRow & { password_hash: string | null }>(sql.userByUsername(appId, username));
  const r = rows[0];
  const usable = r?.password_hash && r.active ? r.password_hash : undefined;
  const right = await verifyPassword(password, usable ?? (await dummyHash()));
  return right && usable ? toUser(r) : undefined;
}
