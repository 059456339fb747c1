#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * The command line: `npx tributary app create --name NAME --redirect-uri URL [--jwks FILE] [--json]`, `app list`,
 * `app set-jwks CLIENT_ID FILE` (an app's public keys, for private_key_jwt and SMART Backend Services),
 * `app rotate-secret CLIENT_ID`, `app delete CLIENT_ID`, and `user password` (the sign-in a person
 * uses on the SMART login page; the password is read from standard input, never from arguments),
 * `directory import FILE_OR_URL...` (health-system lists into the directory), and `connect
 * register|list|remove` (Tributary's client registrations at health systems), and `worker` (the
 * sync jobs, in a process of their own), and `citus sql` (the statements that distribute the schema
 * on Citus, printed). It works on the
 * server's database: the DATABASE_URL, or the embedded PostgreSQL of the data folder (the running
 * server's, or started here for the command when no server runs).
 */
import { limitHeapGrowth, releaseUnusedHeap } from '../src/memory.ts';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { loadConfig, ConfigError } from '../src/config.ts';
import { EmbeddedStartError, runningEmbeddedUrl, startEmbeddedPostgres, type EmbeddedDatabase } from '../src/db/embedded.ts';
import { migrate } from '../src/storage/migrate.ts';
import { citusStatements } from '../src/storage/distribution.ts';
import { AuthStore, describeApp, redirectUriProblem } from '../src/auth/store.ts';
import { setJwks } from '../src/auth/apps.ts';
import { checkJwks, clientAuthentication, kidsOf, type ClientAuthentication, type Jwks } from '../src/auth/jwks.ts';
import { importDirectory, type ImportSource } from '../src/directory/importer.ts';
import { DirectoryFileError, type DirectoryFormat } from '../src/directory/readers.ts';
import { createOutbound, type OutboundFetch } from '../src/net/outbound.ts';
import { syncFhirView } from '../src/directory/fhir-view.ts';
import { loadSearchRegistry } from '../plugins/core.ts';
import { configuredKey, vaultFor } from '../src/auth/vault.ts';
import { countStale, resealAll } from '../src/auth/reseal.ts';
import {
  listRegistrations,
  registrationProblem,
  removeRegistration,
  saveRegistration,
  type RegistrationInput,
} from '../src/connect/registrations.ts';
import { extractIndexes } from '../src/indexing/extract.ts';
import { Repository } from '../src/storage/repository.ts';
import fs from 'node:fs';
import path from 'node:path';

const USAGE = `Usage:
  tributary app create --name NAME [--redirect-uri URL]... [--scope SCOPE]... [--public] [--jwks FILE] [--auth client_secret_basic|client_secret_post|private_key_jwt] [--json]   (--jwks: the app's public JWK Set, for private_key_jwt)
  tributary app list [--json]
  tributary app set-jwks CLIENT_ID FILE [--json]   (replaces the app's public JWK Set at once; the app then authenticates with private_key_jwt)
  tributary app rotate-secret CLIENT_ID [--json]
  tributary app delete CLIENT_ID
  tributary user password --client-id CLIENT_ID --app-user-id ID --username NAME   (password on standard input)
  tributary directory import FILE_OR_URL... [--format hti1|lantern|csv] [--vendor NAME] [--json]   (a folder: its .json and .csv files)
  tributary connect register (--system ID | --vendor NAME --hosts HOST,...) --client-id ID --auth none|client_secret_basic|client_secret_post|private_key_jwt [--scope SCOPES] [--hosts HOST,...]   (a secret on standard input; --hosts: where it may be sent, such as fhir.epic.com,*.epic.com)
  tributary connect list [--json]
  tributary connect remove (--system ID | --vendor NAME)
  tributary worker   (runs the sync jobs, beside a running server or on DATABASE_URL, until SIGTERM)
  tributary keys rotate   (re-seals every sealed value under ENCRYPTION_KEY; the old keys in ENCRYPTION_KEYS_PREVIOUS can then go)
  tributary keys status [--json]   (how many sealed values are not yet under ENCRYPTION_KEY)
  tributary citus sql [--shards N]   (prints the statements that distribute a migrated database on Citus; docs/scaling.md)`;

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
    format: { type: 'string' },
    vendor: { type: 'string' },
    system: { type: 'string' },
    auth: { type: 'string' },
    hosts: { type: 'string', multiple: true },
    jwks: { type: 'string' },
    json: { type: 'boolean', default: false },
    shards: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
const [group, command, arg] = positionals;
const known =
  group === 'app'
    ? ['create', 'list', 'set-jwks', 'rotate-secret', 'delete'].includes(command)
    : (group === 'user' && command === 'password') ||
      (group === 'directory' && command === 'import') ||
      (group === 'connect' && ['register', 'list', 'remove'].includes(command)) ||
      (group === 'keys' && ['rotate', 'status'].includes(command)) ||
      (group === 'worker' && !command) ||
      (group === 'citus' && command === 'sql');
if (opts.help || !known) fail(USAGE, opts.help ? 0 : 2);
if (group === 'citus') {
  // Printed, not run: the operator runs them once on the coordinator (docs/scaling.md).
  const shards = Number(opts.shards ?? 32);
  if (!Number.isInteger(shards) || shards < 1 || shards > 4096)
    fail('--shards takes a whole number from 1 to 4096 (Citus shards per distributed table).');
  process.stdout.write(`${citusStatements(shards).join(';\n')};\n`);
  process.exit(0);
}
/** The JSON of a JWK Set file (its content is never echoed: a private key given by mistake stays out of the terminal). */
function readJwksFile(file: string): unknown {
  if (!fs.existsSync(file) || !fs.statSync(file).isFile())
    fail(`${file}: no such file; give the path of the app's public JWK Set (a JSON file {"keys": [...]}).`);
  if (fs.statSync(file).size > 1024 * 1024) fail(`${file} is larger than 1 MB; give a JWK Set of public keys only.`);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    fail(`${file} is not valid JSON; give a JWK Set file such as {"keys": [{"kty": "RSA", "kid": "...", "n": "...", "e": "AQAB"}]}.`);
  }
}
// The arguments are checked before the database is opened (fail exits at once).
let clientAuth: ClientAuthentication = { method: null, jwks: null };
let newJwks: Jwks | undefined;
if (command === 'create') {
  if (!opts.name?.trim()) fail('app create needs --name NAME.');
  const problem = redirectUriProblem(opts['redirect-uri'] ?? []);
  if (problem) fail(`--redirect-uri: ${problem}`);
  const chosen = clientAuthentication(
    { public: opts.public, method: opts.auth, jwks: opts.jwks === undefined ? undefined : readJwksFile(opts.jwks) },
    { method: '--auth', jwks: '--jwks FILE' },
  );
  if ('problem' in chosen) fail(opts.jwks && !chosen.problem.includes('--') ? `${opts.jwks}: ${chosen.problem}` : chosen.problem);
  clientAuth = chosen;
}
if (command === 'set-jwks') {
  const file = positionals[3];
  if (!arg || !file) fail('app set-jwks needs the CLIENT_ID and the JWK Set file: tributary app set-jwks CLIENT_ID ./public-jwks.json');
  const checked = checkJwks(readJwksFile(file));
  if ('problem' in checked) fail(`${file}: ${checked.problem}`);
  newJwks = checked.jwks;
}
if ((command === 'rotate-secret' || command === 'delete') && !arg) fail(`app ${command} needs the CLIENT_ID.`);
let password = '';
if (group === 'user') {
  if (!opts['client-id'] || !opts['app-user-id'] || !opts.username) fail('user password needs --client-id, --app-user-id and --username.');
  password = (await new Response(process.stdin as unknown as ReadableStream).text()).replace(/\r?\n$/, '');
  if (password.length < 8 || password.length > 1000) fail('The password (on standard input) must have 8 to 1000 characters.');
}

let registration: RegistrationInput | undefined;
if (group === 'connect' && command !== 'list') {
  if (!opts.system === !opts.vendor) fail(`connect ${command} needs --system ID or --vendor NAME (one of the two).`);
}
if (group === 'connect' && command === 'register') {
  const authMethod = opts.auth as RegistrationInput['authMethod'];
  const needsSecret = authMethod === 'client_secret_basic' || authMethod === 'client_secret_post';
  const secret = needsSecret ? (await new Response(process.stdin as unknown as ReadableStream).text()).replace(/\r?\n$/, '') : undefined;
  registration = {
    systemId: opts.system,
    vendor: opts.vendor,
    clientId: opts['client-id'] ?? '',
    authMethod,
    secret: secret || undefined,
    scope: opts.scope?.join(' '),
  };
  // --hosts a,b or --hosts a --hosts b: where its credentials may be sent.
  const hosts = opts.hosts
    ?.flatMap((h) => h.split(','))
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean);
  if (hosts) registration.hosts = hosts;
  const problem = registrationProblem(registration);
  if (problem) fail(`connect register: ${problem}${needsSecret ? ' (the secret is read from standard input)' : ''}`);
}

/** A directory list: a file, every .json/.csv file of a folder, or a URL (fetched, 200 MB at most). */
async function readSources(targets: string[], fetch: OutboundFetch): Promise<ImportSource[]> {
  const format = opts.format as DirectoryFormat | undefined;
  const out: ImportSource[] = [];
  for (const target of targets) {
    if (/^https?:\/\//i.test(target)) {
      const res = await fetch(target, { signal: AbortSignal.timeout(120_000) }).catch((err: Error) => fail(`${target}: ${err.message}`));
      if (!res.ok) fail(`${target}: HTTP ${res.status}`);
      const body = await res.text();
      if (body.length > MAX_LIST_BYTES) fail(`${target}: larger than 200 MB.`);
      out.push({ name: target, content: body, format, vendor: opts.vendor });
      continue;
    }
    if (!fs.existsSync(target)) fail(`${target}: no such file or folder.`);
    const files = fs.statSync(target).isDirectory()
      ? fs
          .readdirSync(target)
          .filter((f) => /\.(json|csv)$/i.test(f))
          .sort()
          .map((f) => path.join(target, f))
      : [target];
    for (const f of files) {
      if (fs.statSync(f).size > MAX_LIST_BYTES) fail(`${f}: larger than 200 MB.`);
      out.push({ name: path.basename(f), content: fs.readFileSync(f, 'utf8'), format, vendor: opts.vendor });
    }
  }
  return out;
}
const MAX_LIST_BYTES = 200 * 1024 * 1024;
let config;
try {
  config = loadConfig({ ...process.env, LOG_LEVEL: 'silent' });
} catch (err) {
  if (err instanceof ConfigError) fail(`Configuration error: ${err.message}`);
  throw err;
}

let sources: ImportSource[] = [];
if (group === 'directory') {
  if (opts.format && !['hti1', 'lantern', 'csv'].includes(opts.format)) fail('--format is hti1, lantern or csv.');
  if (positionals.length < 3) fail('directory import needs at least one file, folder or URL.');
  // A list by URL comes through the outbound agent: no private address unless OUTBOUND_ALLOW names it.
  const outbound = createOutbound({ allow: config.outboundAllow });
  sources = await readSources(positionals.slice(2), outbound.fetch).finally(() => outbound.close());
}

/** A progress bar on a terminal (standard error); nothing when piped. */
function progressBar(stage: string, done: number, total: number): void {
  if (!process.stderr.isTTY) return;
  const width = 30;
  const filled = Math.round((done / Math.max(total, 1)) * width);
  process.stderr.write(`\r${stage.padEnd(8)} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total}${done === total ? '\n' : ''}`);
}

let embedded: EmbeddedDatabase | undefined;
let url = config.databaseUrl ?? runningEmbeddedUrl(config.dataDir, config.embeddedPgPort);
if (!url) {
  embedded = await startEmbeddedPostgres({
    dataDir: config.dataDir,
    port: config.embeddedPgPort,
    sharedBuffersMB: 32,
    onNotice: (m) => process.stderr.write(`${m}\n`),
  }).catch((err) => {
    if (err instanceof EmbeddedStartError) fail(`Could not start: ${err.message}`, 1);
    throw err;
  });
  url = embedded.url;
}
const pool = new pg.Pool({ connectionString: url, max: 2 });
const notFound = (clientId: string) => {
  process.stderr.write(`No app has client_id ${clientId}; tributary app list shows the apps.\n`);
  process.exitCode = 1;
};
const refuse = (message: string) => {
  process.stderr.write(`${message}\n`);
  process.exitCode = 1;
};
const out = (json: unknown, text: string) => process.stdout.write(opts.json ? `${JSON.stringify(json, null, 2)}\n` : `${text}\n`);

try {
  await migrate(pool);
  const store = new AuthStore(pool);
  if (group === 'worker') {
    // The server's plugins with the workers on and no HTTP listener: the jobs run here.
    const { buildApp } = await import('../src/app.ts');
    // As the server: the old generation grows by half at most between full collections (src/memory.ts).
    limitHeapGrowth();
    // Beside an embedded server, its key is the data folder's (the server's own DATABASE_URL-less default).
    const workerConfig = {
      ...loadConfig(process.env),
      databaseUrl: url,
      encryptionKey: configuredKey(config),
      syncWorkers: true,
      directoryAutoload: false,
    };
    const app = await buildApp(workerConfig);
    await app.ready();
    // What building the app read (the R4 definitions, the JSON schema) is garbage now: given back.
    await releaseUnusedHeap();
    app.log.info('worker running: sync jobs are taken here until SIGTERM');
    await new Promise((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    await app.close();
  } else if (group === 'keys') {
    // Re-sealing under the current key (src/auth/reseal.ts): run with ENCRYPTION_KEY the new key
    // and ENCRYPTION_KEYS_PREVIOUS the old ones, on every process, first.
    const vault = vaultFor(config);
    if (!vault.ready) fail('No encryption key: set ENCRYPTION_KEY (the new key) and ENCRYPTION_KEYS_PREVIOUS (the old ones, comma-separated).', 1);
    if (command === 'status') {
      const stale = await countStale(pool, vault);
      const left = Object.values(stale).reduce((a, b) => a + b, 0);
      out(
        { keyId: vault.keyId, notUnderCurrentKey: stale },
        `ENCRYPTION_KEY's id: ${vault.keyId}\n${Object.entries(stale)
          .map(([c, n]) => `  ${c}: ${n} not under it`)
          .join(
            '\n',
          )}\n${left ? 'Run tributary keys rotate before dropping any old key.' : 'Every sealed value is under ENCRYPTION_KEY: the old keys can be dropped.'}`,
      );
    } else {
      process.stdout.write(`Re-sealing under the key with id ${vault.keyId}\n`);
      const { resealed, unopened } = await resealAll(pool, vault, (p) => process.stdout.write(`  ${p.column}: ${p.done}/${p.total}\n`));
      const left = Object.values(await countStale(pool, vault)).reduce((a, b) => a + b, 0);
      for (const u of unopened) process.stderr.write(`  not opened: ${u.column} row ${u.row}: ${u.reason}\n`);
      process.stdout.write(`${resealed} values re-sealed; ${unopened.length} did not open; ${left} not under the current key now.\n`);
      if (left)
        process.stdout.write(
          unopened.length
            ? 'Keep the old keys until those values are sealed again or removed.\n'
            : 'Some were written meanwhile under an old key: run it again.\n',
        );
      else process.stdout.write('Every sealed value is under ENCRYPTION_KEY: the old keys can be dropped from ENCRYPTION_KEYS_PREVIOUS.\n');
      if (unopened.length) process.exitCode = 1;
    }
  } else if (group === 'directory') {
    try {
      const summary = await importDirectory(
        pool,
        sources,
        (stage, done, total) => progressBar(stage === 'read' ? 'reading' : 'writing', done, total),
        { allow: config.outboundAllow },
      );
      // Then the FHIR view (Organization, Endpoint) of what changed, indexed as the server indexes.
      const { registry } = await loadSearchRegistry(pool, config.profilesDir, (msg, detail) =>
        process.stderr.write(`${msg}: ${JSON.stringify(detail)}\n`),
      );
      const view = await syncFhirView(
        { pool, repo: new Repository(pool), indexer: { extract: (resource) => extractIndexes(resource, registry, { partitionId: null }) } },
        (done, total) => progressBar('fhir', done, total),
      );
      const shown = summary.rejected.slice(0, 20).map((r) => `  rejected: ${r.file} ${r.at}: ${r.reason}`);
      const more = summary.rejected.length > 20 ? [`  ... and ${summary.rejected.length - 20} more (--json lists them all)`] : [];
      out(
        { ...summary, fhirView: view },
        [
          `${summary.files} files, ${summary.rows} rows: ${summary.systems} systems, ${summary.added} added, ${summary.updated} updated, ${summary.unchanged} unchanged, ${summary.rejected.length} rows rejected`,
          `FHIR view: ${view.written} Organization and Endpoint resources written, ${view.unchanged} unchanged`,
          ...shown,
          ...more,
        ].join('\n'),
      );
    } catch (err) {
      if (!(err instanceof DirectoryFileError)) throw err;
      process.stderr.write(`${err.message}\nNothing was imported; the directory is as it was.\n`);
      process.exitCode = 1;
    }
  } else if (group === 'connect') {
    const vault = vaultFor(config);
    if (command === 'register') {
      if (registration!.secret && !vault.ready) fail("No encryption key to seal the secret with: set ENCRYPTION_KEY (the server's).", 1);
      await saveRegistration(pool, vault, registration!);
      out(
        { ...registration, secret: undefined },
        `Registered: ${registration!.systemId ? `system ${registration!.systemId}` : `vendor ${registration!.vendor}`} as client ${registration!.clientId} (${registration!.authMethod}).`,
      );
    } else if (command === 'list') {
      const all = await listRegistrations(pool);
      out(
        all,
        all.length
          ? all
              .map(
                (r) =>
                  `${r.system_id ? `system ${r.system_id}` : `vendor ${r.vendor}`}  ${r.client_id}  ${r.auth_method}${r.hosts ? `  hosts ${r.hosts.join(',')}` : ''}${r.scope ? `  ${r.scope}` : ''}`,
              )
              .join('\n')
          : 'No client registrations yet: tributary connect register',
      );
    } else if (await removeRegistration(pool, { systemId: opts.system, vendor: opts.vendor })) {
      out({ removed: true }, 'Removed.');
    } else {
      process.stderr.write('No such registration.\n');
      process.exitCode = 1;
    }
  } else if (group === 'user') {
    const client = await store.appByClientId(opts['client-id']!);
    const user = client && (await store.findUser(client.id, { appUserId: opts['app-user-id'] }));
    if (!client || !user) {
      process.stderr.write(`No user ${opts['app-user-id']} in an app with client_id ${opts['client-id']}.\n`);
      process.exitCode = 1;
    } else if (await store.setPassword(client.id, user.id, opts.username!, password)) {
      out(
        { oneup_user_id: Number(user.id), app_user_id: user.appUserId, username: opts.username },
        `User ${user.appUserId} signs in as ${opts.username}.`,
      );
    } else {
      process.stderr.write(`Another user of this app already has the username ${opts.username}.\n`);
      process.exitCode = 1;
    }
  } else if (command === 'create') {
    const { app, clientSecret } = await store.createApp({
      name: opts.name!.trim(),
      redirectUris: opts['redirect-uri'],
      scopes: opts.scope,
      public: opts.public,
      tokenAuthMethod: clientAuth.method,
      jwks: clientAuth.jwks,
    });
    const bound = app.tokenAuthMethod ? `\n  token_endpoint_auth_method: ${app.tokenAuthMethod}` : '';
    out(
      { ...describeApp(app), ...(clientSecret ? { client_secret: clientSecret } : {}) },
      app.public
        ? `Public app "${app.name}" created.\n  client_id: ${app.clientId}\nIt has no secret: it signs people in with PKCE (SMART's client-public).`
        : app.tokenAuthMethod === 'private_key_jwt'
          ? `App "${app.name}" created.\n  client_id: ${app.clientId}${bound} (keys ${kidsOf(app.jwks).join(', ')})\nIt has no secret: it gets tokens with client assertions signed by its private keys (SMART Backend Services), aud ${config.baseUrl}/oauth2/token.`
          : `App "${app.name}" created.\n  client_id:     ${app.clientId}\n  client_secret: ${clientSecret}${bound}\nThe secret is shown this once; keep it safe (app rotate-secret makes a new one).`,
    );
  } else if (command === 'list') {
    const apps = await store.listApps();
    out(
      apps.map(describeApp),
      apps.length
        ? apps
            .map(
              (a) =>
                `${a.clientId}  ${a.name}  ${a.redirectUris.join(' ')}${a.tokenAuthMethod ? `  ${a.tokenAuthMethod}` : ''}${a.jwks ? ` (keys ${kidsOf(a.jwks).join(', ')})` : ''}`,
            )
            .join('\n')
        : 'No apps yet: tributary app create --name NAME',
    );
  } else if (command === 'set-jwks') {
    const before = await store.appByClientId(arg);
    if (!before) notFound(arg);
    else if (before.public)
      refuse(`App ${arg} is public: it has no client authentication, so no JWK Set; make a confidential app with tributary app create --jwks FILE.`);
    else {
      const app = (await setJwks(pool, arg, newJwks!))!;
      const switched =
        before.tokenAuthMethod === 'private_key_jwt'
          ? ''
          : '\nIt authenticates with private_key_jwt from now on: its client_secret no longer works at the token endpoint.';
      out(
        describeApp(app),
        `JWK Set of ${arg} replaced: keys ${kidsOf(app.jwks).join(', ')}. A client assertion signed by any other key is refused from now on.${switched}`,
      );
    }
  } else if (command === 'rotate-secret') {
    if ((await store.appByClientId(arg))?.tokenAuthMethod === 'private_key_jwt') {
      refuse(`App ${arg} authenticates with private_key_jwt, not a secret; replace its keys with tributary app set-jwks ${arg} FILE instead.`);
    } else {
      const secret = await store.rotateSecret(arg);
      if (secret) out({ client_id: arg, client_secret: secret }, `New client_secret for ${arg}: ${secret}\nThe old one no longer works.`);
      else notFound(arg);
    }
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
