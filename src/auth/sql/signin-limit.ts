/** Fixed SQL statements of the failed sign-in counts (trb_signin_failure, migration 0016). */
import type { Sql } from '../../storage/sql.ts';

/** The lock that holds now on any of the keys (the one that holds longest). */
export function lockedKey(keys: Buffer[]): Sql {
  return {
    text: /* SQL */ `SELECT key_sha256, ceil(extract(epoch FROM locked_until - now()))::int AS seconds FROM trb_signin_failure
       WHERE key_sha256 = ANY($1::bytea[]) AND locked_until > now() ORDER BY locked_until DESC LIMIT 1`,
    values: [keys],
  };
}

/** One more failure of the key (a new window once the last is `windowSeconds` old): its failures and lockouts. */
export function countFailure(key: Buffer, windowSeconds: number): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_signin_failure AS f (key_sha256, failures, window_start) VALUES ($1, 1, now())
         ON CONFLICT (key_sha256) DO UPDATE SET
           failures = CASE WHEN f.window_start < now() - make_interval(secs => $2) THEN 1 ELSE f.failures + 1 END,
           window_start = CASE WHEN f.window_start < now() - make_interval(secs => $2) THEN now() ELSE f.window_start END,
           lockouts = CASE WHEN f.updated_at < now() - interval '1 day' THEN 0 ELSE f.lockouts END,
           updated_at = now()
         RETURNING failures, lockouts`,
    values: [key, windowSeconds],
  };
}

/** The key locked when it has `max` failures: for lockSeconds doubled at each lockout, up to maxLockSeconds. */
export function lockKey(key: Buffer, lockSeconds: number, maxLockSeconds: number, max: number): Sql {
  return {
    text: /* SQL */ `UPDATE trb_signin_failure SET failures = 0, window_start = now(), lockouts = lockouts + 1,
           locked_until = now() + make_interval(secs => least($3::float8, $2::float8 * power(2, least(lockouts, 20))))
         WHERE key_sha256 = $1 AND failures >= $4
         RETURNING ceil(extract(epoch FROM locked_until - now()))::int AS seconds`,
    values: [key, lockSeconds, maxLockSeconds, max],
  };
}

export const forgetKey = (key: Buffer): Sql => ({ text: 'DELETE FROM trb_signin_failure WHERE key_sha256 = $1', values: [key] });

/** One failure of the key taken back. */
export const takeBackFailure = (key: Buffer): Sql => ({
  text: 'UPDATE trb_signin_failure SET failures = greatest(failures - 1, 0) WHERE key_sha256 = $1',
  values: [key],
});
