/**
 * Test helpers: a database of its own for each test file, and an app built on it.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import tap from 'tap';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../src/app.ts';
import { loadConfig, type Config } from '../src/config.ts';
import { startTestPostgres } from './pg.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

let server: Promise<string> | undefined;

/** The admin URL of the run's PostgreSQL (started here when the file runs on its own). */
async function adminUrl(t: Teardown): Promise<string> {
  if (process.env.TRIBUTARY_TEST_PG_URL) return process.env.TRIBUTARY_TEST_PG_URL;
  if (!server) {
    const started = startTestPostgres();
    server = started.then((s) => s.url);
    // The file's root test, not the subtest asking first: later subtests need it too.
    tap.teardown(async () => (await started).stop());
  }
  return server;
}

/** Creates an empty database for this test file; dropped at teardown. */
export async function testDatabase(t: Teardown): Promise<string> {
  const admin = await adminUrl(t);
  const name = `t_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  });
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}

/** One encryption key per test process: every app a test file builds shares it (as processes would). */
const TEST_KEY = randomBytes(32).toString('hex');

/**
 * The FHIR server's own tests run without credentials (FHIR_AUTH=off; the auth tests turn it on),
 * without the shipped directory (the directory tests load it themselves), without the sandbox
 * systems (the sandbox tests turn them on) and without sync workers (the sync tests run syncs
 * themselves, or turn the workers on). Outbound requests may reach 127.0.0.1 (the tests' own local
 * servers, on any port); `localhost` and every other private address stay refused.
 */
export function testConfig(databaseUrl: string, overrides: Partial<Config> = {}): Config {
  return {
    ...loadConfig({
      DATABASE_URL: databaseUrl,
      LOG_LEVEL: 'silent',
      BASE_URL: 'http://tributary.test',
      FHIR_AUTH: 'off',
      DIRECTORY_AUTOLOAD: 'false',
      SANDBOXES: 'false',
      ENCRYPTION_KEY: TEST_KEY,
      SYNC_WORKERS: 'false',
      OUTBOUND_ALLOW: '127.0.0.1',
    }),
    ...overrides,
  };
}

/** An app on a fresh database, closed at teardown. */
export async function buildTestApp(t: Teardown, overrides: Partial<Config> = {}): Promise<FastifyInstance> {
  const url = await testDatabase(t);
  const app = await buildApp(testConfig(url, overrides), { logger: false });
  await app.ready();
  t.teardown(() => app.close());
  return app;
}

/** One request, failing (instead of hanging the suite) when it takes longer than `ms`. */
export async function injectWithin(app: FastifyInstance, opts: InjectOptions, ms: number): Promise<LightMyRequestResponse> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([app.inject(opts), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `what` every `pause` ms until it answers something truthy, or `ms` pass; answers its last answer. */
export async function waitFor<T>(what: () => T | Promise<T>, ms = 30_000, pause = 100): Promise<T> {
  const until = Date.now() + ms;
  let v = await what();
  while (!v && Date.now() < until) {
    await new Promise((r) => setTimeout(r, pause));
    v = await what();
  }
  return v;
}
