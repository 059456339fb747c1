/**
 * `npm test`: starts one embedded PostgreSQL, runs tap (each test file makes a database of its
 * own on it, files run in parallel), then stops PostgreSQL. Arguments pass through to tap.
 */
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { startTestPostgres } from './pg.ts';

const bin = path.join(import.meta.dirname, '..', 'node_modules', '.bin');
const tap = path.join(bin, 'tap');
// Test processes run on the project's Node 24 (node_modules/.bin/node), also when this script
// is started without npm.
const env = { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}` };
// tap builds its test class from its plugins at install time, with @tapjs/typescript (ts-node)
// among them; package.json removes that plugin (Node 24 strips the types itself), and a fresh
// install must be rebuilt to match before the first run.
const build = spawnSync(tap, ['build'], { stdio: 'inherit', env });
if (build.status !== 0) process.exit(build.status ?? 1);

const pg = await startTestPostgres();
const child = spawn(tap, process.argv.slice(2), {
  stdio: 'inherit',
  env: { ...env, TRIBUTARY_TEST_PG_URL: pg.url },
});
const code: number = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
await pg.stop();
process.exit(code);
