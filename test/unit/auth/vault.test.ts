/**
 * The vault: values carry the id of the key that sealed them, old keys open but never seal, one
 * derived key per purpose, a changed byte is refused, values sealed before key ids still open,
 * and MACs verify under the current and previous keys only.
 */
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import t from 'tap';
import { keyId, Vault, VaultError, type Purpose } from '../../../src/auth/vault.ts';
import { sealV1 } from './seal-v1.ts';

const A = randomBytes(32);
const B = randomBytes(32);
const PURPOSES: Purpose[] = ['connection-token', 'registration-secret', 'webhook-secret', 'private-key', 'connect-verifier'];

const refused = (fn: () => unknown, code: VaultError['code']) => {
  try {
    fn();
    return 'opened';
  } catch (err) {
    return err instanceof VaultError ? err.code === code || `${err.code}: ${err.message}` : String(err);
  }
};

t.test('a sealed value names its key and opens for its purpose and row only', async (t) => {
  const vault = new Vault(A);
  const sealed = vault.encrypt('the token', 'row-1', 'connection-token');
  t.equal(sealed[0], 2, 'version 2');
  t.same(sealed.subarray(1, 9), keyId(A), "the key's id follows the version");
  t.equal(vault.keyId, keyId(A).toString('hex'));
  t.equal(vault.decrypt(sealed, 'row-1', 'connection-token'), 'the token');
  t.equal(
    refused(() => vault.decrypt(sealed, 'row-2', 'connection-token'), 'refused'),
    true,
    'another row: refused',
  );
  t.not(vault.encrypt('the token', 'row-1', 'connection-token').toString('hex'), sealed.toString('hex'), 'a fresh nonce each time');
});

t.test('a value sealed for one purpose never opens for another', async (t) => {
  const vault = new Vault(A);
  for (const sealedFor of PURPOSES) {
    const sealed = vault.encrypt('secret', 'ctx', sealedFor);
    for (const openedFor of PURPOSES) {
      if (openedFor === sealedFor) t.equal(vault.decrypt(sealed, 'ctx', openedFor), 'secret', `${sealedFor} opens for itself`);
      else
        t.equal(
          refused(() => vault.decrypt(sealed, 'ctx', openedFor), 'refused'),
          true,
          `${sealedFor} does not open as ${openedFor}`,
        );
    }
  }
});

t.test('every changed byte is refused', async (t) => {
  const vault = new Vault(A);
  const sealed = vault.encrypt('a refresh token', 'ctx', 'connection-token');
  const opened: number[] = [];
  for (let i = 0; i < sealed.length; i++) {
    const changed = Buffer.from(sealed);
    changed[i] ^= 0x01;
    try {
      vault.decrypt(changed, 'ctx', 'connection-token');
      opened.push(i);
    } catch (err) {
      if (!(err instanceof VaultError)) throw err;
    }
  }
  t.same(opened, [], 'no byte of version, key id, nonce, tag or ciphertext can change unnoticed');
  t.equal(
    refused(() => vault.decrypt(sealed.subarray(0, 20), 'ctx', 'connection-token'), 'malformed'),
    true,
    'a cut value is not a sealed value',
  );
});

t.test('keys rotate: old keys open what they sealed, never seal', async (t) => {
  const sealedUnderA = new Vault(A).encrypt('under A', 'ctx', 'webhook-secret');
  const withoutA = new Vault(B);
  try {
    withoutA.decrypt(sealedUnderA, 'ctx', 'webhook-secret');
    t.fail('opened without the key');
  } catch (err) {
    t.ok(err instanceof VaultError && err.code === 'unknown_key', 'unknown key');
    t.match((err as Error).message, keyId(A).toString('hex'), 'the message names the missing key by its id');
    t.match((err as Error).message, 'ENCRYPTION_KEYS_PREVIOUS', 'and says where to put it');
  }
  const both = new Vault(B, [A]);
  t.equal(both.decrypt(sealedUnderA, 'ctx', 'webhook-secret'), 'under A', 'with A previous, it opens');
  t.notOk(both.isCurrent(sealedUnderA), 'and is not current');
  const resealed = both.encrypt(both.decrypt(sealedUnderA, 'ctx', 'webhook-secret'), 'ctx', 'webhook-secret');
  t.same(resealed.subarray(1, 9), keyId(B), 'sealing uses the current key, never a previous one');
  t.ok(both.isCurrent(resealed));
  t.equal(new Vault(B).decrypt(resealed, 'ctx', 'webhook-secret'), 'under A', 'once re-sealed, B alone opens it');
  t.equal(
    refused(() => new Vault(A).decrypt(resealed, 'ctx', 'webhook-secret'), 'unknown_key'),
    true,
    'and A alone does not',
  );
});

t.test('values sealed before key ids (version 1) still open, under the current or a previous key', async (t) => {
  const old = sealV1(A, 'sealed in 2024', 'client-1');
  t.equal(new Vault(A).decrypt(old, 'client-1', 'registration-secret'), 'sealed in 2024');
  t.equal(new Vault(B, [A]).decrypt(old, 'client-1', 'registration-secret'), 'sealed in 2024', 'A as a previous key');
  t.equal(
    refused(() => new Vault(B).decrypt(old, 'client-1', 'registration-secret'), 'refused'),
    true,
    'not under another key',
  );
  t.equal(
    refused(() => new Vault(A).decrypt(old, 'client-2', 'registration-secret'), 'refused'),
    true,
    'nor for another row',
  );
  const changed = Buffer.from(old);
  changed[changed.length - 1] ^= 1;
  t.equal(
    refused(() => new Vault(A).decrypt(changed, 'client-1', 'registration-secret'), 'refused'),
    true,
    'a changed byte is refused',
  );
  t.notOk(new Vault(A).isCurrent(old), 'a version-1 value is to be re-sealed');
});

t.test('without a key nothing is sealed or opened', async (t) => {
  const none = new Vault(undefined, [A]);
  t.notOk(none.ready);
  t.equal(
    refused(() => none.encrypt('x', '', 'private-key'), 'no_key'),
    true,
  );
  t.equal(
    refused(() => none.decrypt(new Vault(A).encrypt('x', '', 'private-key'), '', 'private-key'), 'no_key'),
    true,
  );
  t.throws(() => new Vault(randomBytes(16)), { code: 'malformed' }, 'a key of the wrong length');
});

t.test('MACs: the same as before key ids, verified under current and previous keys', async (t) => {
  const vault = new Vault(A);
  // The label sign() always used: MACs already handed out (demo cookies, connect states) still verify.
  const before = createHmac('sha256', Buffer.from(hkdfSync('sha256', A, Buffer.alloc(0), 'tributary signed values', 32)))
    .update('nonce-1')
    .digest('base64url');
  t.equal(vault.sign('nonce-1'), before);
  t.ok(vault.verify('nonce-1', before));
  t.notOk(vault.verify('nonce-2', before), 'another value');
  t.notOk(vault.verify('nonce-1', before.slice(0, -1)), 'a shorter MAC');
  t.notOk(vault.verify('nonce-1', `${before}A`), 'a longer MAC');
  t.notOk(vault.verify('nonce-1', ''), 'no MAC');
  const flipped = before.slice(0, -2) + (before.at(-2) === 'A' ? 'B' : 'A') + before.at(-1);
  t.notOk(vault.verify('nonce-1', flipped), 'one character changed');
  t.ok(new Vault(B, [A]).verify('nonce-1', before), 'a MAC of a previous key verifies');
  t.notOk(new Vault(B).verify('nonce-1', before), 'not once that key is dropped');
  t.not(new Vault(B, [A]).sign('nonce-1'), before, 'signing uses the current key');
});
