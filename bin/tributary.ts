#!/usr/bin/env node
/**
 * The command line: `npx tributary app create --name NAME --redirect-uri URL [--json]`, `app list`,
 * `app rotate-secret CLIENT_ID`, `app delete CLIENT_ID`, and `user password` (the sign-in a person
 * uses on the SMART login page; the password is read from standard input, never from arguments). It works on the server's database: the
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
  tributary app delete CLIENT_ID
  tributary user password --client-id CLIENT_ID --app-user-id ID --username NAME   (password on standard input)`;

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
    'client-id': { type: 'string' },
    'app-user-id': { type: 'string' },
    username: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
const [group, command, arg] = positionals;
const known = group === 'app' ? ['create', 'list', 'rotate-secret', 'delete'].includes(command) : group === 'user' && command === 'password';
if (opts.help || !known) fail(USAGE, opts.help ? 0 : 2);
// The arguments are checked before the database is opened (fail exits at once).
if (command === 'create') {
  if (!opts.name?.trim()) fail('app create needs --name NAME.');
  const problem = redirectUriProblem(opts['redirect-uri'] ?? []);
  if (problem) fail(`--redirect-uri: ${problem}`);
}
if ((command === 'rotate-secret' || command === 'delete') && !arg) fail(`app ${command} needs the CLIENT_ID.`);
let password = '';
if (group === 'user') {
  if (!opts['client-id'] || !opts['app-user-id'] || !opts.username) fail('user password needs --client-id, --app-user-id and --username.');
  password = (await new Response(process.stdin as unknown as ReadableStream).text()).replace(/\r?\n$/, '');
  if (password.length < 8 || password.length > 1000) fail('The password (on standard input) must have 8 to 1000 characters.');
}

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
  if (group === 'user') {
    const client = await store.appByClientId(opts['client-id']!);
    const user = client && (await store.findUser(client.id, { appUserId: opts['app-user-id'] }));
    if (!client || !user) {
      process.stderr.write(`No user ${opts['app-user-id']} in an app with client_id ${opts['client-id']}.\n`);
      process.exitCode = 1;
    } else if (await store.setPassword(client.id, user.id, opts.username!, password)) {
      out({ oneup_user_id: Number(user.id), app_user_id: user.appUserId, username: opts.username }, `User ${user.appUserId} signs in as ${opts.username}.`);
    } else {
      process.stderr.write(`Another user of this app already has the username ${opts.username}.\n`);
      process.exitCode = 1;
    }
  } else if (command === 'create') {
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
