/**
 * Keys at rest: the private signing keys sealed like every other secret (rows from before are
 * sealed at the next start; without a key, what cannot work is said), and ENCRYPTION_KEY rotating:
 * values sealed under key A open under key B with A previous; `tributary keys rotate` re-seals
 * every sealed value under B in batches (idempotent, with progress), after which B alone opens them;
 * a value under a key the server lacks says which; a changed byte is refused and reported.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import t, { type Test } from 'tap';
import { exportJWK, generateKeyPair, jwtVerify, importJWK } from 'jose';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.ts';
import { keyId, Vault, VaultError } from '../../src/auth/vault.ts';
import { countStale, resealAll, type ResealProgress } from '../../src/auth/reseal.ts';
import { connectionSealKey, registrationFor } from '../../src/connect/client.ts';
import { saveRegistration } from '../../src/connect/registrations.ts';
import { webhookOf } from '../../src/sync/webhooks.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { sealV1 } from '../unit/auth/seal-v1.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
const A = randomBytes(32);
const B = randomBytes(32);

async function appOn(t: Test, url: string, key: Buffer | undefined, previous: Buffer[] = []): Promise<FastifyInstance> {
  const app = await buildApp(testConfig(url, { encryptionKey: key, encryptionKeysPrevious: previous }), { logger: false });
  await app.ready();
  t.teardown(() => app.close());
  return app;
}

function cli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      path.join(REPO, 'node_modules', '.bin', 'node'),
      [path.join(REPO, 'bin', 'tributary.ts'), ...args],
      { env: { ...process.env, ...env } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const prefixOf = (key: Buffer) => `\\x02${keyId(key).toString('hex')}`;

t.test('private JWKs are sealed; rows from before are sealed at the next start', async (t) => {
  const url = await testDatabase(t);
  const first = await appOn(t, url, A);
  await first.signingKeys.load();
  await first.clientKeys.load();
  const made = await first.pg.query<{ kid: string; private_jwk: unknown; sealed: string }>(
    "SELECT kid, private_jwk, encode(private_jwk_sealed, 'hex') AS sealed FROM trb_signing_key ORDER BY purpose",
  );
  t.equal(made.rows.length, 2, 'an id_token key and a client key');
  for (const r of made.rows) {
    t.equal(r.private_jwk, null, `${r.kid}: no private JWK in the clear`);
    t.equal(r.sealed.slice(0, 18), `02${keyId(A).toString('hex')}`, 'sealed (version 2) under the key');
  }

  // A key as it was kept before this change: in the clear, the newest of its purpose.
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const privateJwk = await exportJWK(privateKey);
  const publicJwk = { ...(await exportJWK(publicKey)), kid: 'old-clear-key', alg: 'RS256', use: 'sig' };
  await first.pg.query(
    "INSERT INTO trb_signing_key (kid, private_jwk, public_jwk, purpose, created_at) VALUES ('old-clear-key', $1, $2, 'id_token', now() + interval '1 minute')",
    [privateJwk, publicJwk],
  );
  const second = await appOn(t, url, A);
  const row = (
    await second.pg.query<{ private_jwk: unknown; sealed: Buffer | null }>(
      "SELECT private_jwk, private_jwk_sealed AS sealed FROM trb_signing_key WHERE kid = 'old-clear-key'",
    )
  ).rows[0];
  t.equal(row.private_jwk, null, 'sealed at start: nothing left in the clear');
  t.ok(row.sealed && !row.sealed.includes(Buffer.from(String(privateJwk.d))), 'the private exponent is not in the sealed value');
  t.same(JSON.parse(second.vault.decrypt(row.sealed!, 'old-clear-key', 'private-key')), privateJwk, 'it opens as the same key, bound to its kid');
  t.equal(
    refusedCode(() => second.vault.decrypt(row.sealed!, 'another-kid', 'private-key')),
    'refused',
    'not for another kid',
  );
  const token = await second.signingKeys.idToken({}, 'http://tributary.test', 'app', 'user-1', 60);
  const verified = await jwtVerify(token, await importJWK(publicJwk, 'RS256'));
  t.equal(verified.protectedHeader.kid, 'old-clear-key', 'and still signs id_tokens that its public key verifies');
  t.same(
    (await second.inject({ method: 'GET', url: '/oauth2/jwks' })).json().keys.map((k: { kid: string }) => k.kid),
    ['old-clear-key'],
  );
});

t.test('without a key (DATABASE_URL, no ENCRYPTION_KEY) it says what cannot work', async (t) => {
  const url = await testDatabase(t);
  const app = await appOn(t, url, undefined);
  t.same((await app.inject({ method: 'GET', url: '/oauth2/jwks' })).json(), { keys: [] }, 'no signing key to publish');
  await t.rejects(
    app.clientKeys.load(),
    { code: 'no_key', message: /ENCRYPTION_KEY.*no id_token is issued.*private_key_jwt/ },
    'the client key says why',
  );
  t.equal(Number((await app.pg.query('SELECT count(*) AS n FROM trb_signing_key')).rows[0].n), 0, 'and no private key is stored in the clear');
});

function refusedCode(fn: () => unknown): string {
  try {
    fn();
    return 'opened';
  } catch (err) {
    return err instanceof VaultError ? err.code : String(err);
  }
}

t.test('ENCRYPTION_KEY rotates: A previous opens, keys rotate re-seals under B, then B alone opens', async (t) => {
  const url = await testDatabase(t);
  const underA = await appOn(t, url, A);
  const vaultA = underA.vault;
  // One of every sealed value: a registration secret (and one sealed before key ids), connection
  // tokens, a webhook secret, the private keys.
  await underA.pg.query(
    "INSERT INTO trb_system (id, url_normalized, resource_url, name, content_sha256) SELECT 'sys-' || i, 'https://ehr' || i || '.example/fhir', 'https://ehr' || i || '.example/fhir', 'EHR ' || i, 'x' FROM generate_series(1, 5) i",
  );
  await saveRegistration(underA.pg, vaultA, {
    systemId: 'sys-1',
    clientId: 'client-1',
    authMethod: 'client_secret_basic',
    secret: 'registration secret 1',
  });
  await saveRegistration(underA.pg, vaultA, { systemId: 'sys-2', clientId: 'client-2', authMethod: 'client_secret_post', secret: 'placeholder' });
  const v1 = sealV1(A, 'sealed before key ids', 'client-2');
  await underA.pg.query("UPDATE trb_client_registration SET client_secret_sealed = $1 WHERE system_id = 'sys-2'", [v1]);
  const { app: owner } = await underA.auth.createApp({ name: 'Rotation app', redirectUris: ['https://app.example/cb'] });
  const user = (await underA.auth.createUser(owner.id, 'person-1'))!;
  for (let i = 1; i <= 5; i++) {
    const ctx = connectionSealKey(user.id, `sys-${i}`);
    await underA.pg.query(
      "INSERT INTO trb_connection (app_id, user_id, system_id, scope, access_token_sealed, refresh_token_sealed) VALUES ($1, $2, $3, 'patient/*.read', $4, $5)",
      [
        owner.id,
        user.id,
        `sys-${i}`,
        vaultA.encrypt(`access ${i}`, ctx, 'connection-token'),
        vaultA.encrypt(`refresh ${i}`, ctx, 'connection-token'),
      ],
    );
  }
  await underA.pg.query('INSERT INTO trb_webhook (app_id, url, secret_sealed) VALUES ($1, $2, $3)', [
    owner.id,
    'https://app.example/hook',
    vaultA.encrypt('webhook secret', `webhook:${owner.id}`, 'webhook-secret'),
  ]);
  await underA.signingKeys.load();
  await underA.clientKeys.load();

  /** Every sealed value, opened through the code that reads it. */
  const openAll = async (app: FastifyInstance) => {
    const tokens = await app.pg.query<{ system_id: string; a: Buffer; r: Buffer }>(
      'SELECT system_id, access_token_sealed AS a, refresh_token_sealed AS r FROM trb_connection ORDER BY system_id',
    );
    return {
      registrations: [
        (await registrationFor(app.pg, app.vault, { id: 'sys-1', vendor: null }))?.secret,
        (await registrationFor(app.pg, app.vault, { id: 'sys-2', vendor: null }))?.secret,
      ],
      tokens: tokens.rows.map((c) => [
        app.vault.decrypt(c.a, connectionSealKey(user.id, c.system_id), 'connection-token'),
        app.vault.decrypt(c.r, connectionSealKey(user.id, c.system_id), 'connection-token'),
      ]),
      webhook: JSON.stringify(await webhookOf(app.pg, app.vault, owner.id)).includes('webhook secret'),
      keys: [(await app.signingKeys.load()).kid, (await app.clientKeys.load()).kid],
    };
  };
  const expected = await openAll(underA);
  t.same(expected.registrations, ['registration secret 1', 'sealed before key ids']);
  t.same(expected.tokens[4], ['access 5', 'refresh 5']);
  t.ok(expected.webhook);

  const bAlone = new Vault(B);
  const sealedA = (await underA.pg.query<{ a: Buffer }>("SELECT access_token_sealed AS a FROM trb_connection WHERE system_id = 'sys-1'")).rows[0].a;
  try {
    bAlone.decrypt(sealedA, connectionSealKey(user.id, 'sys-1'), 'connection-token');
    t.fail('opened under another key');
  } catch (err) {
    t.match(err, { code: 'unknown_key', message: keyId(A).toString('hex') }, 'a value under an unknown key names the key it needs');
  }
  await t.rejects(
    registrationFor(underA.pg, bAlone, { id: 'sys-1', vendor: null }),
    { code: 'server_error' },
    'the connect flow says it cannot open the secret (no 500)',
  );

  const withPrevious = await appOn(t, url, B, [A]);
  t.same(await openAll(withPrevious), expected, 'with B current and A previous, everything opens');

  const env = { DATABASE_URL: url, ENCRYPTION_KEY: B.toString('hex'), ENCRYPTION_KEYS_PREVIOUS: A.toString('hex'), LOG_LEVEL: 'silent' };
  const before = await cli(['keys', 'status', '--json'], env);
  t.equal(before.code, 0, before.stderr);
  t.same(
    JSON.parse(before.stdout).notUnderCurrentKey,
    {
      'trb_connection.access_token_sealed': 5,
      'trb_connection.refresh_token_sealed': 5,
      'trb_client_registration.client_secret_sealed': 2,
      'trb_webhook.secret_sealed': 1,
      ...(JSON.parse(before.stdout).notUnderCurrentKey['trb_webhook.previous_secret_sealed'] !== undefined
        ? { 'trb_webhook.previous_secret_sealed': 0 }
        : {}),
      'trb_signing_key.private_jwk_sealed': 2,
    },
    'keys status counts what is not under B',
  );

  const rotated = await cli(['keys', 'rotate'], env);
  t.equal(rotated.code, 0, rotated.stderr);
  t.match(rotated.stdout, `Re-sealing under the key with id ${keyId(B).toString('hex')}`);
  t.match(rotated.stdout, 'trb_connection.access_token_sealed: 5/5', 'progress per column');
  t.match(rotated.stdout, '15 values re-sealed; 0 did not open; 0 not under the current key now.');
  t.notMatch(rotated.stdout + rotated.stderr, /access \d|refresh \d|registration secret|webhook secret/, 'no secret is printed');

  const prefixes = await withPrevious.pg.query<{ p: string; n: string }>(/* SQL */ `SELECT substring(v FROM 1 FOR 9)::text AS p, count(*) AS n FROM (
       SELECT access_token_sealed AS v FROM trb_connection UNION ALL SELECT refresh_token_sealed FROM trb_connection
       UNION ALL SELECT client_secret_sealed FROM trb_client_registration UNION ALL SELECT secret_sealed FROM trb_webhook
       UNION ALL SELECT private_jwk_sealed FROM trb_signing_key) s GROUP BY 1`);
  t.same(
    prefixes.rows.map((r) => [r.p, Number(r.n)]),
    [[prefixOf(B), 15]],
    'every value is now sealed under B (version 2)',
  );
  const bOnly = await appOn(t, url, B);
  t.same(await openAll(bOnly), expected, 'and B alone opens everything, the private keys with the same kids');

  const again = await cli(['keys', 'rotate'], env);
  t.equal(again.code, 0);
  t.match(again.stdout, '0 values re-sealed; 0 did not open; 0 not under the current key now.', 'running it again changes nothing');
});

t.test('keys rotate: batches, and a value that opens under no key is reported and left alone', async (t) => {
  const url = await testDatabase(t);
  const app = await appOn(t, url, A);
  await app.pg.query(
    "INSERT INTO trb_system (id, url_normalized, resource_url, name, content_sha256) SELECT 'sys-' || i, 'u' || i, 'u' || i, 'n', 'x' FROM generate_series(1, 5) i",
  );
  for (let i = 1; i <= 5; i++)
    await saveRegistration(app.pg, app.vault, { systemId: `sys-${i}`, clientId: `c-${i}`, authMethod: 'client_secret_basic', secret: `s-${i}` });
  const changed = (await app.pg.query<{ s: Buffer }>("SELECT client_secret_sealed AS s FROM trb_client_registration WHERE system_id = 'sys-3'"))
    .rows[0].s;
  changed[changed.length - 1] ^= 1;
  await app.pg.query("UPDATE trb_client_registration SET client_secret_sealed = $1 WHERE system_id = 'sys-3'", [changed]);

  const vault = new Vault(B, [A]);
  const seen: ResealProgress[] = [];
  const { resealed, unopened } = await resealAll(app.pg, vault, (p) => seen.push(p), 2);
  t.same(
    seen.filter((p) => p.column === 'trb_client_registration.client_secret_sealed').map((p) => p.done),
    [0, 2, 4, 5],
    'two rows a batch',
  );
  t.equal(unopened.length, 1, 'the changed value is reported');
  t.match(unopened[0], { column: 'trb_client_registration.client_secret_sealed', reason: /changed/ });
  t.equal(resealed, 4, 'the four others re-sealed');
  const stale = await countStale(app.pg, vault);
  t.equal(stale['trb_client_registration.client_secret_sealed'], 1, 'the changed one stays as it was, not under B');
  const still = (await app.pg.query<{ s: Buffer }>("SELECT client_secret_sealed AS s FROM trb_client_registration WHERE system_id = 'sys-3'")).rows[0]
    .s;
  t.same(still, changed, 'left unchanged');
});
