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

/**
 * `programs`: another PostgreSQL's programs folder (Debian's /usr/lib/postgresql/15) instead of the
 * embedded one; TRIBUTARY_TEST_PG_PROGRAMS says so for a test file run on its own.
 */
export async function startTestPostgres(programs = process.env.TRIBUTARY_TEST_PG_PROGRAMS || undefined): Promise<EmbeddedDatabase & { dir: string }> {
  // Mode 700, as a folder under /root is: as root, the cluster is kept where the postgres OS user
  // reaches it (src/db/cluster-folder.ts), and every test run goes that way.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-pg-'));
  const db = await startEmbeddedPostgres({ dataDir: dir, port: await freePort(), ephemeral: true, programs });
  return {
    ...db,
    dir,
    stop: async () => {
      await db.stop();
      fs.rmSync(dir, { recursive: true, force: true });
      // A cluster kept elsewhere goes with it.
      fs.rmSync(db.clusterDir, { recursive: true, force: true });
    },
  };
}
