/**
 * The hourly sweep (the `expire` queue, src/jobs/queues.ts): what can no longer be used is removed.
 * The auth area's own rows here; the connect area's pending sign-ins by src/connect/expire.ts.
 */
import type pg from 'pg';
import { expireConnectStates } from '../connect/expire.ts';
import { expireAuthRows } from './sql/expire.ts';

/** The rows removed, per kind (the job's log line shows them in this order). */
export interface Expired {
  codes: number;
  requests: number;
  tokens: number;
  rates: number;
  assertions: number;
  connect_states: number;
  signin_failures: number;
}

type AuthCounts = Omit<Expired, 'connect_states'>;

/**
 * Removes expired codes, authorization requests, tokens, client assertions and sign-in failures a
 * day old, and the rate counts of past hours; answers how many of each.
 */
export async function expireAuth(pool: pg.Pool): Promise<AuthCounts> {
  const { rows } = await pool.query<AuthCounts>(expireAuthRows());
  return rows[0];
}

/**
 * The `expire` job: the auth area's rows and the connect sign-ins that expired (every hour, in one
 * process). Answers the rows removed.
 */
export async function expire(_job: unknown, deps: { pool: pg.Pool }): Promise<Expired> {
  const auth = await expireAuth(deps.pool);
  const connectStates = await expireConnectStates(deps.pool);
  return {
    codes: auth.codes,
    requests: auth.requests,
    tokens: auth.tokens,
    rates: auth.rates,
    assertions: auth.assertions,
    connect_states: connectStates,
    signin_failures: auth.signin_failures,
  };
}
