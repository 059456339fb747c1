/**
 * Failed sign-ins on the SMART login page, limited per username and per client address, counted in
 * PostgreSQL (migration 0016) so that every server process sharing the database shares the count.
 * A key that fails `max` times within WINDOW_SECONDS is locked for LOCK_SECONDS, doubled at each
 * lockout in a row (up to MAX_LOCK_SECONDS); a lockout is forgotten a day after its key's last
 * failure, and a username's count when it signs in. A username that does not exist is counted and
 * locked exactly like one that does, so the answers never tell them apart.
 * See: https://pages.nist.gov/800-63-3/sp800-63b.html#throttle (SP 800-63B 5.2.2, rate limiting)
 * See: https://cheatsheetseries.owasp.org/cheatsheets/Authentication_Cheat_Sheet.html#account-lockout
 */
import type pg from 'pg';
import { sha256 } from './secrets.ts';
import * as sql from './sql/signin-limit.ts';

export const WINDOW_SECONDS = 15 * 60;
export const LOCK_SECONDS = 5 * 60;
export const MAX_LOCK_SECONDS = 60 * 60;
/** Failures of one username within the window before it is locked. */
export const USERNAME_FAILURES = 5;

export interface SigninKeys {
  /** The app the username belongs to (usernames are unique per app). */
  appId: number;
  username: string;
  /** The client's IP address. */
  address: string;
}

export interface Lock {
  /** What is locked: the username (whoever tries it) or the address (whatever username it tries). */
  by: 'username' | 'address';
  /** Seconds until it opens again (at least 1). */
  seconds: number;
}

const usernameKey = (k: SigninKeys) => sha256(`username\n${k.appId}\n${k.username.normalize('NFC')}`);
const addressKey = (k: SigninKeys) => sha256(`address\n${k.address}`);

export class SigninLimit {
  private readonly pool: pg.Pool;
  /** Failures of one address within the window before it is locked; 0: no limit per address. */
  private readonly addressFailures: number;

  constructor(pool: pg.Pool, addressFailures: number) {
    this.pool = pool;
    this.addressFailures = addressFailures;
  }

  private keys(k: SigninKeys): { key: Buffer; by: Lock['by']; max: number }[] {
    const keys: { key: Buffer; by: Lock['by']; max: number }[] = [{ key: usernameKey(k), by: 'username', max: USERNAME_FAILURES }];
    if (this.addressFailures > 0) keys.push({ key: addressKey(k), by: 'address', max: this.addressFailures });
    return keys;
  }

  /** The lock that holds now (the longer, when both do), or undefined: the sign-in may be tried. */
  async locked(k: SigninKeys): Promise<Lock | undefined> {
    const keys = this.keys(k);
    const { rows } = await this.pool.query<{ key_sha256: Buffer; seconds: number }>(sql.lockedKey(keys.map((x) => x.key)));
    const r = rows[0];
    if (!r) return undefined;
    return { by: keys.find((x) => x.key.equals(r.key_sha256))!.by, seconds: Math.max(1, r.seconds) };
  }

  /**
   * Before a password is checked: undefined when it may be, else the lock that refuses it. The
   * attempt is counted as a failure first (a right password takes it back, see `succeeded`), so
   * that many attempts sent at once get `max` password checks between them, not one each.
   */
  async begin(k: SigninKeys): Promise<Lock | undefined> {
    const held = await this.locked(k);
    if (held) return held;
    let over: Lock | undefined;
    for (const { key, by, max } of this.keys(k)) {
      const { rows } = await this.pool.query<{ failures: number; lockouts: number }>(sql.countFailure(key, WINDOW_SECONDS));
      // Past the budget while the attempts before it are still being checked: refused, for as long
      // as the lock they are about to set.
      if (rows[0].failures > max) over ??= { by, seconds: Math.min(MAX_LOCK_SECONDS, LOCK_SECONDS * 2 ** Math.min(rows[0].lockouts, 20)) };
    }
    return over;
  }

  /** After `begin`, a wrong password: answers the lock it caused, if any. */
  async failed(k: SigninKeys): Promise<Lock | undefined> {
    let lock: Lock | undefined;
    for (const { key, by, max } of this.keys(k)) {
      // Several processes may count at once: the row's own lock makes one of them lock the key.
      const { rows } = await this.pool.query<{ seconds: number }>(sql.lockKey(key, LOCK_SECONDS, MAX_LOCK_SECONDS, max));
      if (rows[0] && (!lock || rows[0].seconds > lock.seconds)) lock = { by, seconds: Math.max(1, rows[0].seconds) };
    }
    return lock;
  }

  /** After `begin`, a right password: the username's count starts again; the address's attempt is taken back. */
  async succeeded(k: SigninKeys): Promise<void> {
    await this.pool.query(sql.forgetKey(usernameKey(k)));
    if (this.addressFailures > 0) await this.pool.query(sql.takeBackFailure(addressKey(k)));
  }
}

/** "5 minutes", "1 minute", "40 seconds": how long to wait, in words. */
export function waitWords(seconds: number): string {
  if (seconds < 60) return `${seconds} second${seconds === 1 ? '' : 's'}`;
  const minutes = Math.ceil(seconds / 60);
  return `${minutes} minute${minutes === 1 ? '' : 's'}`;
}
