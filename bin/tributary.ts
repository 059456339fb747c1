#!/usr/bin/env node
/**
 * The command line: `npx tributary app create --name NAME --redirect-uri URL [--json]`, `app list`,
 * `app rotate-secret CLIENT_ID`, `app delete CLIENT_ID`. It works on the server's database: the
 * DATABASE_URL, or the embedded PostgreSQL of the data folder (the running server's, or started
 * here for the command when no server runs).
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { loadConfig, ConfigError } from '../src/config.ts';
import { runningEmbeddedUrl, startEmbeddedPostgres, type EmbeddedDatabase } from '../src/db/embedded.ts';
import { migrate } from '../src/storage/migrate.ts';
import { AuthStore, describeApp, redirectUriProblem } from '../src/auth/store.ts';

const USAGE = `Usage:
  tributary app create --name NAME [--redirect-uri URL]... [--scope SCOPE]... [--public] [--json]
  tributary app list [--json]
  tributary app rotate-secret CLIENT_ID [--json]
  tributary app delete CLIENT_ID`;

function fail(message: string, code = 2): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    name: { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    scope: { type: 'string', multiple: true },
    public: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
const [group, command, arg] = positionals;
if (opts.help || group !== 'app' || !['create', 'list', 'rotate-secret', 'delete'].includes(command)) fail(USAGE, opts.help ? 0 : 2);
// The arguments are checked before the database is opened (fail exits at once).
if (command === 'create') {
  if (!opts.name?.trim()) fail('app create needs --name NAME.');
  const problem = redirectUriProblem(opts['redirect-uri'] ?? []);
  if (problem) fail(`--redirect-uri: ${problem}`);
}
if ((command === 'rotate-secret' || command === 'delete') && !arg) fail(`app ${command} needs the CLIENT_ID.`);

let config;
try {
  config = loadConfig({ ...process.env, LOG_LEVEL: 'silent' });
} catch (err) {
  if (err instanceof ConfigError) fail(`Configuration error: ${err.message}`);
  throw err;
}

let embedded: EmbeddedDatabase | undefined;
let url = config.databaseUrl ?? runningEmbeddedUrl(config.dataDir, config.embeddedPgPort);
if (!url) {
  embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort, sharedBuffersMB: 32 });
  url = embedded.url;
}
const pool = new pg.Pool({ connectionString: url, max: 2 });
const notFound = (clientId: string) => {
  process.stderr.write(`No app has client_id ${clientId}.\n`);
  process.exitCode = 1;
};
const out = (json: unknown, text: string) => process.stdout.write(opts.json ? `${JSON.stringify(json, null, 2)}\n` : `${text}\n`);

try {
  await migrate(pool);
  const store = new AuthStore(pool);
  if (command === 'create') {
    const { app, clientSecret } = await store.createApp({ name: opts.name!.trim(), redirectUris: opts['redirect-uri'], scopes: opts.scope, public: opts.public });
    out(
      { ...describeApp(app), ...(app.public ? {} : { client_secret: clientSecret }) },
      app.public
        ? `Public app "${app.name}" created.\n  client_id: ${app.clientId}\nIt has no secret: it signs people in with PKCE (SMART's client-public).`
        : `App "${app.name}" created.\n  client_id:     ${app.clientId}\n  client_secret: ${clientSecret}\nThe secret is shown this once; keep it safe (app rotate-secret makes a new one).`,
    );
  } else if (command === 'list') {
    const apps = await store.listApps();
    out(apps.map(describeApp), apps.length ? apps.map((a) => `${a.clientId}  ${a.name}  ${a.redirectUris.join(' ')}`).join('\n') : 'No apps yet: tributary app create --name NAME');
  } else if (command === 'rotate-secret') {
    const secret = await store.rotateSecret(arg);
    if (secret) out({ client_id: arg, client_secret: secret }, `New client_secret for ${arg}: ${secret}\nThe old one no longer works.`);
    else notFound(arg);
  } else if (await store.deleteApp(arg)) {
    out({ client_id: arg, deleted: true }, `App ${arg} deleted, with its users, tokens and data.`);
  } else {
    notFound(arg);
  }
} finally {
  // Reached on every outcome (no process.exit in here), so an embedded PostgreSQL started for
  // this command is always stopped.
  await pool.end();
  await embedded?.stop();
}
