/**
 * Secrets at rest that must be read back (a health system's tokens, Tributary's client secrets at
 * health systems, apps' webhook secrets, the private signing keys): AES-256-GCM, each value with
 * its own random 96-bit nonce and its authentication tag, so a changed byte is refused.
 *
 * Stored as (version 2): 2 (1 byte) | key id (8) | nonce (12) | tag (16) | ciphertext, where
 * - the key id names the master key a value was sealed under (the first 8 bytes of SHA-256 over a
 *   label and the key), so ENCRYPTION_KEY can rotate: old keys (ENCRYPTION_KEYS_PREVIOUS) still
 *   open what they sealed but never seal, and `tributary keys rotate` re-seals under the current one;
 * - the AES key is derived from the master key per purpose (HKDF-SHA256 with the purpose as its
 *   label, RFC 5869), so a value sealed for one purpose never opens for another;
 * - the header and `context` (the row a value belongs to) are the associated data: a value copied
 *   to another row, or given another key id, does not open.
 * Version 1 (before key ids): 1 | nonce | tag | ciphertext under a master key itself. Still opened,
 * under any configured key and for any purpose, until `keys rotate` re-seals it as version 2.
 * See: https://www.rfc-editor.org/rfc/rfc5869 · https://nvlpubs.nist.gov/nistpubs/Legacy/SP/nistspecialpublication800-38d.pdf
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** What a sealed value is for; each purpose has a key of its own. */
export type Purpose = 'connection-token' | 'registration-secret' | 'webhook-secret' | 'private-key' | 'connect-verifier';

const V1 = 1;
const V2 = 2;
const ID_BYTES = 8;
const HEADER = 1 + ID_BYTES;
const NO_KEY = 'No encryption key: set ENCRYPTION_KEY (64 hex characters; openssl rand -hex 32), the same in every process.';

/** `code`: no_key (none configured), malformed (not a sealed value), unknown_key (sealed under a key this server lacks), refused (changed, or another purpose, row or key). */
export class VaultError extends Error {
  readonly code: 'no_key' | 'malformed' | 'unknown_key' | 'refused';
  constructor(message: string, code: VaultError['code'] = 'refused') {
    super(message);
    this.code = code;
  }
}

/** A master key, its id, and its derived keys (made on first use). */
class MasterKey {
  readonly raw: Buffer;
  readonly id: Buffer;
  private readonly derived = new Map<string, Buffer>();

  constructor(raw: Buffer) {
    if (raw.length !== 32) throw new VaultError('An encryption key must be 32 bytes.', 'malformed');
    this.raw = raw;
    this.id = keyId(raw);
  }

  derive(label: string): Buffer {
    let k = this.derived.get(label);
    if (!k) this.derived.set(label, (k = Buffer.from(hkdfSync('sha256', this.raw, Buffer.alloc(0), label, 32))));
    return k;
  }
}

/** A key's id: 8 bytes of SHA-256 over a label and the key (the key itself cannot be recovered from it). */
export function keyId(key: Buffer): Buffer {
  return createHash('sha256').update('tributary key id').update(key).digest().subarray(0, ID_BYTES);
}

const sealLabel = (purpose: Purpose) => `tributary sealed ${purpose}`;
// The label sign() has always used, so MACs made before key ids still verify.
const SIGN_LABEL = 'tributary signed values';

export class Vault {
  private readonly current: MasterKey | undefined;
  private readonly keys: MasterKey[];

  /** `previous`: old keys that open what they sealed and verify what they signed, never seal or sign. */
  constructor(key: Buffer | undefined, previous: readonly Buffer[] = []) {
    this.current = key ? new MasterKey(key) : undefined;
    const old = previous.map((k) => new MasterKey(k)).filter((k) => !this.current?.id.equals(k.id));
    this.keys = this.current ? [this.current, ...old] : [];
  }

  get ready(): boolean {
    return this.current !== undefined;
  }

  /** The current key's id (hex), as sealed values carry it. */
  get keyId(): string | undefined {
    return this.current?.id.toString('hex');
  }

  private need(): MasterKey {
    if (!this.current) throw new VaultError(NO_KEY, 'no_key');
    return this.current;
  }

  /** An HMAC-SHA256 of `data` (base64url) under a key derived for signed values, such as a connect state. */
  sign(data: string): string {
    return createHmac('sha256', this.need().derive(SIGN_LABEL)).update(data).digest('base64url');
  }

  /** Whether `mac` is sign(data) under the current key or a previous one, compared in constant time. */
  verify(data: string, mac: string): boolean {
    const given = Buffer.from(mac, 'utf8');
    let ok = false;
    for (const k of this.keys) {
      const expected = Buffer.from(createHmac('sha256', k.derive(SIGN_LABEL)).update(data).digest('base64url'), 'utf8');
      // Lengths are public (every MAC has the same); the bytes are compared in constant time.
      if (given.length === expected.length && timingSafeEqual(given, expected)) ok = true;
    }
    return ok;
  }

  /** Seals `plain` for `purpose`, bound to `context` (the row it belongs to), under the current key. */
  encrypt(plain: string, context: string, purpose: Purpose): Buffer {
    const key = this.need();
    const header = Buffer.concat([Buffer.from([V2]), key.id]);
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key.derive(sealLabel(purpose)), nonce);
    cipher.setAAD(Buffer.concat([header, Buffer.from(context, 'utf8')]));
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return Buffer.concat([header, nonce, cipher.getAuthTag(), body]);
  }

  /** Opens what encrypt sealed (under the current key or a previous one) for the same purpose and context. */
  decrypt(sealed: Buffer, context: string, purpose: Purpose): string {
    this.need();
    if (sealed.length >= HEADER + 28 && sealed[0] === V2) {
      const id = sealed.subarray(1, HEADER);
      const key = this.keys.find((k) => k.id.equals(id));
      if (!key) {
        throw new VaultError(
          `This value was sealed under the key with id ${id.toString('hex')}, which this server does not have (ENCRYPTION_KEY's id is ${this.keyId}): add that key to ENCRYPTION_KEYS_PREVIOUS.`,
          'unknown_key',
        );
      }
      const plain = open(
        key.derive(sealLabel(purpose)),
        sealed.subarray(HEADER),
        Buffer.concat([sealed.subarray(0, HEADER), Buffer.from(context, 'utf8')]),
      );
      if (plain === undefined)
        throw new VaultError(
          `The value does not open under key ${key.id.toString('hex')} for ${purpose} of this row: it was changed, or sealed for another purpose or row.`,
        );
      return plain;
    }
    if (sealed.length >= 29 && sealed[0] === V1) {
      for (const key of this.keys) {
        const plain = open(key.raw, sealed.subarray(1), Buffer.from(context, 'utf8'));
        if (plain !== undefined) return plain;
      }
      throw new VaultError(
        'This value (sealed before key ids) opens under none of the configured keys (ENCRYPTION_KEY, ENCRYPTION_KEYS_PREVIOUS), or it was changed.',
      );
    }
    throw new VaultError('Not a value this vault sealed.', 'malformed');
  }

  /** The first bytes (version and key id) of every value sealed under the current key, for SQL that finds the rest. */
  get currentPrefix(): Buffer {
    return Buffer.concat([Buffer.from([V2]), this.need().id]);
  }

  /** Whether `sealed` is already sealed under the current key (as `keys rotate` leaves every value). */
  isCurrent(sealed: Buffer): boolean {
    return this.current !== undefined && sealed.subarray(0, HEADER).equals(this.currentPrefix);
  }
}

/** nonce (12) | tag (16) | ciphertext, opened under `key` with `aad`; undefined when refused. */
function open(key: Buffer, rest: Buffer, aad: Buffer): string | undefined {
  const decipher = createDecipheriv('aes-256-gcm', key, rest.subarray(0, 12));
  decipher.setAAD(aad);
  decipher.setAuthTag(rest.subarray(12, 28));
  try {
    return Buffer.concat([decipher.update(rest.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}

/** The embedded setup's key: `<dataDir>/encryption.key`, made once (readable by this user only). */
export function dataDirKey(dataDir: string): Buffer {
  const file = path.join(dataDir, 'encryption.key');
  try {
    return Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'hex');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.mkdirSync(dataDir, { recursive: true });
  const key = randomBytes(32);
  // wx: if another process made it meanwhile, theirs wins and is read back.
  try {
    fs.writeFileSync(file, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
    return key;
  } catch {
    return Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'hex');
  }
}

/**
 * The key a process seals with: ENCRYPTION_KEY, else (embedded PostgreSQL only) the data folder's;
 * with DATABASE_URL and no key, none (every process must share one, so it must be set).
 */
export function configuredKey(config: { encryptionKey?: Buffer; databaseUrl?: string; dataDir: string }): Buffer | undefined {
  return config.encryptionKey ?? (config.databaseUrl ? undefined : dataDirKey(config.dataDir));
}

/** The vault of a process: the configured key, and the previous ones that still open and verify. */
export function vaultFor(config: {
  encryptionKey?: Buffer;
  encryptionKeysPrevious?: readonly Buffer[];
  databaseUrl?: string;
  dataDir: string;
}): Vault {
  return new Vault(configuredKey(config), config.encryptionKeysPrevious ?? []);
}
