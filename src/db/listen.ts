/**
 * A connection of its own (not the pool's: it is held for the process's life) that LISTENs on some
 * channels until stopped, and is made again a moment after it is lost.
 */
import pg from 'pg';

export interface ListenOptions {
  /** Its settings are the pool's (the same server and credentials). */
  pool: pg.Pool;
  channels: string[];
  /** At each notification on any of the channels. */
  onNotify: () => void;
  /** Each time it listens again, after a start or a loss: what was sent meanwhile is the caller's to read. */
  onListening?: () => void;
  /** When it could not listen (it tries again after `retryMs`). */
  onFail: (err: unknown) => void;
  retryMs?: number;
}

/** Listens until stop(); resolves once the first attempt has listened or failed. */
export async function keepListening(o: ListenOptions): Promise<{ stop(): Promise<void> }> {
  let stopped = false;
  let current: pg.Client | undefined;
  const listen = async (): Promise<void> => {
    if (stopped) return;
    const client = new pg.Client(o.pool.options);
    client.on('error', () => {});
    client.on('notification', () => o.onNotify());
    client.on('end', () => {
      if (current === client) current = undefined;
      if (!stopped) setTimeout(() => void listen(), o.retryMs ?? 1000).unref();
    });
    try {
      await client.connect();
      for (const channel of o.channels) await client.query(`LISTEN ${channel}`);
      current = client;
      o.onListening?.();
    } catch (err) {
      o.onFail(err);
      // Its 'end' tries again.
      await client.end().catch(() => {});
    }
  };
  await listen();
  return {
    stop: async () => {
      stopped = true;
      await current?.end().catch(() => {});
    },
  };
}
