/** The auth area's part of the hourly sweep (src/auth/expire.ts), as one statement. */
import type { Sql } from '../../storage/sql.ts';

/**
 * Deletes expired codes, authorization requests, tokens, client assertions, sign-in failures a day
 * old and the rate counts of past hours; answers how many of each.
 */
export function expireAuthRows(): Sql {
  return {
    text: /* SQL */ `WITH c AS (DELETE FROM trb_auth_code WHERE expires_at < now() RETURNING 1),
            r AS (DELETE FROM trb_authz_request WHERE expires_at < now() RETURNING 1),
            t AS (DELETE FROM trb_token WHERE expires_at < now() RETURNING 1),
            q AS (DELETE FROM trb_rate WHERE bucket < date_trunc('hour', now()) RETURNING 1),
            a AS (DELETE FROM trb_client_assertion WHERE expires_at < now() RETURNING 1),
            f AS (DELETE FROM trb_signin_failure WHERE updated_at < now() - interval '1 day' AND (locked_until IS NULL OR locked_until < now()) RETURNING 1)
       SELECT (SELECT count(*) FROM c)::int AS codes, (SELECT count(*) FROM r)::int AS requests, (SELECT count(*) FROM t)::int AS tokens,
         (SELECT count(*) FROM q)::int AS rates, (SELECT count(*) FROM a)::int AS assertions,
         (SELECT count(*) FROM f)::int AS signin_failures`,
    values: [],
  };
}
