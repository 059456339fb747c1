/**
 * One throw-away embedded PostgreSQL for a test run (started by test/run.ts, or by the first
 * test file that needs one when a file is run on its own).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../src/db/embedded.ts';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export async function startTestPostgres(): Promise<EmbeddedDatabase & { dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-pg-'));
  // The postgres user must be able to reach the folder.
  fs.chmodSync(dir, 0o755);
  const db = await startEmbeddedPostgres({ dataDir: dir, port: await freePort(), ephemeral: true });
  return {
    ...db,
    dir,
    stop: async () => {
      await db.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
