/**
 * `npm test`: starts one embedded PostgreSQL, runs tap (each test file makes a database of its
 * own on it, files run in parallel), then stops PostgreSQL. Arguments pass through to tap.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { startTestPostgres } from './pg.ts';

const bin = path.join(import.meta.dirname, '..', 'node_modules', '.bin');
const tap = path.join(bin, 'tap');
// Test processes run on the project's Node 24 (node_modules/.bin/node), also when this script
// is started without npm.
const env = { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}` };
// tap builds its test class from its plugins at install time, with @tapjs/typescript (ts-node)
// among them; package.json removes that plugin (Node 24 strips the types itself), and a fresh
// install must be rebuilt to match before the first run.
// Built once per install and plugin list (a stamp says which), and one run at a time: runs that
// start together would otherwise rebuild it under each other's feet.
const root = path.join(import.meta.dirname, '..');
const tapPlugins = JSON.stringify(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).tap?.plugin ?? []);
const stamp = path.join(root, 'node_modules', '.tap-build-stamp');
const built = path.join(root, 'node_modules', '@tapjs', 'test', 'test-built', 'dist', 'esm', 'index.js');
const lock = path.join(root, 'node_modules', '.tap-build-lock');
const isBuilt = () => fs.existsSync(built) && fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === tapPlugins;
if (!isBuilt()) {
  for (let tries = 0; ; tries++) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch {
      // Another run builds; a lock older than two minutes is one that died.
      if (tries > 240 || Date.now() - (fs.statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now()) > 120_000)
        fs.rmSync(lock, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    if (!isBuilt()) {
      fs.rmSync(stamp, { force: true });
      const build = spawnSync(tap, ['build'], { stdio: 'inherit', env });
      if (build.status !== 0) process.exit(build.status ?? 1);
      fs.writeFileSync(stamp, tapPlugins);
    }
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

/**
 * The PostgreSQL servers the suite runs on: the embedded one, and Debian's PostgreSQL 15 as well
 * when it is installed and the whole suite runs (no arguments). TEST_PG=embedded, or a programs
 * folder (TEST_PG=/usr/lib/postgresql/15), runs it on that one only.
 */
const DEBIAN_PG15 = '/usr/lib/postgresql/15';
function servers(): (string | undefined)[] {
  const chosen = process.env.TEST_PG;
  if (chosen === 'embedded') return [undefined];
  if (chosen) return [chosen];
  if (process.argv.length > 2) return [undefined];
  if (fs.existsSync(path.join(DEBIAN_PG15, 'bin', 'postgres'))) return [undefined, DEBIAN_PG15];
  console.log(`# Debian's PostgreSQL 15 is not installed (${DEBIAN_PG15}): the suite runs on the embedded PostgreSQL only`);
  return [undefined];
}

let code = 0;
for (const programs of servers()) {
  const server = await startTestPostgres(programs);
  const version = await serverVersion(server.url);
  console.log(`# the suite on PostgreSQL ${version}${programs ? ` (${programs})` : ' (embedded)'}`);
  const child = spawn(tap, process.argv.slice(2), {
    stdio: 'inherit',
    env: { ...env, TRIBUTARY_TEST_PG_URL: server.url, ...(programs ? { TRIBUTARY_TEST_PG_PROGRAMS: programs } : {}) },
  });
  const exit: number = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
  await server.stop();
  if (exit !== 0) {
    console.log(`# the suite failed on PostgreSQL ${version}`);
    code = exit;
  }
}
process.exit(code);

async function serverVersion(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
  } finally {
    await client.end();
  }
}
