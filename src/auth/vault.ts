/**
 * Secrets at rest that must be read back (a health system's access and refresh tokens, the client
 * secrets Tributary holds for health systems): AES-256-GCM under the configured key, each value
 * with its own random 96-bit nonce and its authentication tag, so a changed byte is refused.
 * Stored as: version (1 byte) | nonce (12) | tag (16) | ciphertext. `context` (e.g. the row a value
 * belongs to) is bound as associated data: a value copied to another row does not decrypt.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const VERSION = 1;

export class VaultError extends Error {}

export class Vault {
  private readonly key: Buffer | undefined;

  constructor(key: Buffer | undefined) {
    if (key && key.length !== 32) throw new VaultError('The encryption key must be 32 bytes.');
    this.key = key;
  }

  get ready(): boolean {
    return this.key !== undefined;
  }

  private need(): Buffer {
    if (!this.key) throw new VaultError('No encryption key: set ENCRYPTION_KEY (64 hex characters; openssl rand -hex 32), the same in every process.');
    return this.key;
  }

  /** An HMAC-SHA256 of `data` (base64url) under a key derived from this one, for signed values such as a connect state. */
  sign(data: string): string {
    const subkey = Buffer.from(hkdfSync('sha256', this.need(), Buffer.alloc(0), 'tributary signed values', 32));
    return createHmac('sha256', subkey).update(data).digest('base64url');
  }

  encrypt(plain: string, context = ''): Buffer {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.need(), nonce);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return Buffer.concat([Buffer.from([VERSION]), nonce, cipher.getAuthTag(), body]);
  }

  decrypt(sealed: Buffer, context = ''): string {
    if (sealed.length < 29 || sealed[0] !== VERSION) throw new VaultError('Not a value this vault sealed.');
    const decipher = createDecipheriv('aes-256-gcm', this.need(), sealed.subarray(1, 13));
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(sealed.subarray(13, 29));
    try {
      return Buffer.concat([decipher.update(sealed.subarray(29)), decipher.final()]).toString('utf8');
    } catch {
      throw new VaultError('The value does not decrypt under this key (another key, or it was changed).');
    }
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
