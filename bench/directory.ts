/**
 * The health-system directory import, end to end: a server as `npm start` runs it (its shipped
 * directory not autoloaded), then `npx tributary directory import directory/lantern` beside it,
 * twice: a first import of the full Lantern set (67,645 rows), then a re-import with nothing
 * changed. Prints the wall time of each (the CLI process included) and one JSON line.
 *
 *   npx node bench/directory.ts [--runs 1]
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO, round, spawnServer } from './server.ts';

const { values: args } = parseArgs({ options: { runs: { type: 'string', default: '1' } } });
const runs = Math.min(10, Math.max(1, Math.floor(Number(args.runs)) || 1));
const TARGET = { firstImportS: 60, reimportS: 30 };

function cliImport(dataDir: string, port: number): Promise<{ seconds: number; summary: { systems: number; added: number; updated: number; unchanged: number } }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile(
      path.join(REPO, 'node_modules', '.bin', 'node'),
      [path.join(REPO, 'bin', 'tributary.ts'), 'directory', 'import', path.join(REPO, 'directory', 'lantern'), '--json'],
      { env: { ...process.env, TRIBUTARY_DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(port) }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve({ seconds: (performance.now() - t0) / 1000, summary: JSON.parse(stdout) })),
    );
  });
}

const results: { firstS: number; reimportS: number; systems: number }[] = [];
for (let i = 0; i < runs; i++) {
  const server = await spawnServer(fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-directory-')), { remove: true });
  try {
    // The CLI finds the server's embedded PostgreSQL through its data folder and port.
    const port = Number(fs.readFileSync(path.join(server.dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[3]);
    const first = await cliImport(server.dataDir, port);
    const again = await cliImport(server.dataDir, port);
    if (again.summary.added || again.summary.updated) throw new Error(`the re-import changed ${again.summary.added + again.summary.updated} systems`);
    results.push({ firstS: round(first.seconds, 2)!, reimportS: round(again.seconds, 2)!, systems: first.summary.systems });
    console.log(`run ${i + 1}: first import ${round(first.seconds, 2)} s (${first.summary.added} systems added; target < ${TARGET.firstImportS} s), re-import ${round(again.seconds, 2)} s (${again.summary.unchanged} unchanged; target < ${TARGET.reimportS} s)`);
  } finally {
    await server.stop();
  }
}
console.log(JSON.stringify({ bench: 'directory', runs: results, target: TARGET }));
