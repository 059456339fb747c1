/**
 * `npm test`: starts one embedded PostgreSQL, runs tap (each test file makes a database of its
 * own on it, files run in parallel), then stops PostgreSQL. Arguments pass through to tap.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { startTestPostgres } from './pg.ts';

const pg = await startTestPostgres();
const tap = path.join(import.meta.dirname, '..', 'node_modules', '.bin', 'tap');
const child = spawn(tap, process.argv.slice(2), {
  stdio: 'inherit',
  env: { ...process.env, TRIBUTARY_TEST_PG_URL: pg.url },
});
const code: number = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
await pg.stop();
process.exit(code);
