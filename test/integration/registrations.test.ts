/**
 * Tributary's client registrations at health systems, as the operator sets them: the CLI
 * (register with the secret on standard input, list without secrets, remove) and the
 * CLIENT_REGISTRATIONS_FILE read at start (a bad file says what is wrong with which entry);
 * a system's own registration wins over its vendor's; a vendor-wide one names the hosts it may
 * be sent to (the CLI, the file and the database refuse one without them).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { buildApp } from '../../src/app.ts';
import { registrationFor } from '../../src/connect/client.ts';
import { readRegistrationsFile, saveRegistration } from '../../src/connect/registrations.ts';
import { buildTestApp, testConfig } from '../helper.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
const app = await buildTestApp(t);
const env = { ...process.env, DATABASE_URL: app.config.databaseUrl, ENCRYPTION_KEY: app.config.encryptionKey!.toString('hex') };

function cli(args: string[], stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      path.join(REPO, 'node_modules', '.bin', 'node'),
      [path.join(REPO, 'bin', 'tributary.ts'), 'connect', ...args],
      { env },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin!.end(stdin);
  });
}

t.test('CLI: register (secret on standard input), list without secrets, remove', async (t) => {
  const made = await cli(
    [
      'register',
      '--vendor',
      'Acme EHR',
      '--hosts',
      'fhir.acme.example,*.Acme.example',
      '--client-id',
      'acme-client',
      '--auth',
      'client_secret_post',
      '--scope',
      'launch/patient',
      '--scope',
      'patient/*.read',
    ],
    's3cret-value\n',
  );
  t.equal(made.code, 0, made.stderr);
  const reg = await registrationFor(app.pg, app.vault, { id: 'any-acme-system', vendor: 'Acme EHR' });
  t.same(
    reg,
    {
      clientId: 'acme-client',
      authMethod: 'client_secret_post',
      secret: 's3cret-value',
      scope: 'launch/patient patient/*.read',
      hosts: ['fhir.acme.example', '*.acme.example'],
      vendor: 'Acme EHR',
    },
    "a vendor's registration serves its systems, at the hosts it names",
  );
  const sealed = (await app.pg.query('SELECT client_secret_sealed FROM trb_client_registration WHERE vendor = $1', ['Acme EHR'])).rows[0]
    .client_secret_sealed as Buffer;
  t.notOk(sealed.includes(Buffer.from('s3cret-value')), 'sealed, not in the clear');

  t.equal((await cli(['register', '--system', 'sys-1', '--client-id', 'own', '--auth', 'none'])).code, 0);
  t.equal(
    (await registrationFor(app.pg, app.vault, { id: 'sys-1', vendor: 'Acme EHR' }))?.clientId,
    'own',
    "a system's own registration wins over its vendor's",
  );

  const listed = await cli(['list', '--json']);
  t.equal(listed.code, 0);
  t.notMatch(listed.stdout, /s3cret/, 'no secret in the listing');
  t.same(
    JSON.parse(listed.stdout).map((r: { client_id: string; hosts: string[] | null }) => [r.client_id, r.hosts]),
    [
      ['own', null],
      ['acme-client', ['fhir.acme.example', '*.acme.example']],
    ],
  );
  t.match((await cli(['list'])).stdout, /vendor Acme EHR {2}acme-client {2}client_secret_post {2}hosts fhir\.acme\.example,\*\.acme\.example/);

  const noSecret = await cli(['register', '--vendor', 'X', '--hosts', 'x.example', '--client-id', 'x', '--auth', 'client_secret_basic']);
  t.equal(noSecret.code, 2);
  t.match(noSecret.stderr, /needs the client secret/);
  t.equal(
    (await cli(['register', '--vendor', 'X', '--system', 'y', '--client-id', 'x', '--auth', 'none'])).code,
    2,
    'a system or a vendor, not both',
  );
  t.equal((await cli(['remove', '--system', 'sys-1'])).code, 0);
  t.equal((await cli(['remove', '--system', 'sys-1'])).code, 1, 'already gone');
});

t.test('CLIENT_REGISTRATIONS_FILE: read at start; a bad one says what is wrong with it', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trb-reg-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const good = path.join(dir, 'good.json');
  fs.writeFileSync(
    good,
    JSON.stringify([{ system_id: 'file-sys', client_id: 'from-file', auth_method: 'client_secret_basic', client_secret: 'file-secret' }]),
  );
  const withFile = await buildApp(testConfig(app.config.databaseUrl!, { clientRegistrationsFile: good }), { logger: false });
  t.teardown(() => withFile.close());
  t.same(await registrationFor(app.pg, app.vault, { id: 'file-sys', vendor: null }), {
    clientId: 'from-file',
    authMethod: 'client_secret_basic',
    secret: 'file-secret',
    scope: 'launch/patient openid fhirUser offline_access patient/*.read',
  });

  // What a start with a bad file fails with (the plugin throws it, and the start stops).
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify([{ vendor: 'V', client_id: 'c', auth_method: 'client_secret_post' }]));
  t.throws(() => readRegistrationsFile(bad), /bad\.json, entry 0: client_secret_post needs the client secret/);
  fs.writeFileSync(bad, '{"not": "a list"}');
  t.throws(() => readRegistrationsFile(bad), /a JSON list of registrations is expected/);
  fs.writeFileSync(bad, '[{');
  t.throws(() => readRegistrationsFile(bad), /bad\.json: /);
});

t.test('a vendor-wide registration without hosts is refused at registration time: CLI, file, saveRegistration, database', async (t) => {
  const noHosts = await cli(['register', '--vendor', 'Hostless EHR', '--client-id', 'h', '--auth', 'none']);
  t.equal(noHosts.code, 2);
  t.match(noHosts.stderr, /names the hosts it may be sent to/);
  for (const bad of ['https://fhir.x.example', 'fhir.x.example:443', '*.com', 'fhir.x.example/path', '*']) {
    const res = await cli(['register', '--vendor', 'Hostless EHR', '--hosts', bad, '--client-id', 'h', '--auth', 'none']);
    t.equal(res.code, 2, `--hosts ${bad} is refused`);
  }
  t.equal(
    (await cli(['register', '--system', 'one-sys', '--client-id', 'h', '--auth', 'none'])).code,
    0,
    "a system's own registration needs no hosts",
  );
  await t.rejects(saveRegistration(app.pg, app.vault, { vendor: 'Hostless EHR', clientId: 'h', authMethod: 'none' }), /names the hosts/);
  await t.rejects(
    app.pg.query("INSERT INTO trb_client_registration (vendor, client_id, auth_method) VALUES ('Hostless EHR', 'h', 'none')"),
    { code: '23514', constraint: 'trb_client_registration_vendor_hosts' },
    'the database holds it too',
  );
  t.equal((await app.pg.query("SELECT count(*)::int AS n FROM trb_client_registration WHERE vendor = 'Hostless EHR'")).rows[0].n, 0);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trb-reg-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'vendor.json');
  fs.writeFileSync(file, JSON.stringify([{ vendor: 'V', client_id: 'c', auth_method: 'none' }]));
  t.throws(() => readRegistrationsFile(file), /vendor\.json, entry 0: A registration for a whole vendor names the hosts/);
  fs.writeFileSync(file, JSON.stringify([{ vendor: 'V', client_id: 'c', auth_method: 'none', hosts: 'v.example' }]));
  t.throws(() => readRegistrationsFile(file), /entry 0: hosts is a list of host names/);
  fs.writeFileSync(file, JSON.stringify([{ vendor: 'V', client_id: 'c', auth_method: 'none', hosts: ['fhir.v.example', '*.v.example'] }]));
  t.same(readRegistrationsFile(file)[0].hosts, ['fhir.v.example', '*.v.example']);
});
