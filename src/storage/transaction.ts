/**
 * One database transaction on a pooled connection: BEGIN, the work, COMMIT; ROLLBACK when the work
 * throws (the error goes on to the caller), and the connection back to the pool either way. A
 * connection that breaks meanwhile (the server restarted, say) fails the work, not the process:
 * its 'error' event is heard here, and the broken connection is dropped rather than pooled.
 */
import type pg from 'pg';

export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => (broken = err);
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    if (!broken) await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}
