/**
 * A sandbox system's app of this server (its patients are the app's users, its records the app's
 * data), made on first start and kept in step with the configuration, and Tributary's client
 * registration at the system (the secret sealed with the configured key).
 */
import type pg from 'pg';
import type { FastifyBaseLogger } from 'fastify';
import type { AuthStore } from '../auth/store.ts';
import type { SigningKeys } from '../auth/keys.ts';
import type { Vault } from '../auth/vault.ts';
import { newSecret } from '../auth/secrets.ts';
import { saveRegistration } from '../connect/registrations.ts';
import { inTransaction } from '../storage/transaction.ts';
import { vendorScopes } from './paths.ts';
import type { SandboxDefinition } from './systems.ts';
import * as sql from './sql.ts';

const SANDBOX_LOCK = 0x7472_7362_78; // any constant

export interface RegistrationDeps {
  pool: pg.Pool;
  auth: Pick<AuthStore, 'createApp'>;
  /** The key Tributary signs client assertions with (registered with a system that takes private_key_jwt). */
  clientKeys: Pick<SigningKeys, 'jwks'>;
  vault: Vault;
  log: FastifyBaseLogger;
  /** This server's base URL (BASE_URL). */
  baseUrl: string;
  /** SANDBOX_ACCESS_TOKEN_SECONDS: the token lifetime of a system that states none of its own. */
  accessTokenSeconds: number;
}

/** The sandbox's app (made on first start), kept in step with the configuration; answers its id. */
export async function ensureSandboxApp(deps: RegistrationDeps, def: SandboxDefinition): Promise<number> {
  const callback = `${deps.baseUrl}/connect/callback`;
  return inTransaction(deps.pool, async (c) => {
    // Processes starting together take turns; the first makes the app.
    await c.query(sql.advisoryLock(SANDBOX_LOCK));
    const known = await c.query<{ app_id: number }>(sql.sandboxApp(def.name));
    // Tributary's public key, registered with the system when it takes private_key_jwt.
    const jwks = def.auth === 'private_key_jwt' ? await deps.clientKeys.jwks() : null;
    // A simulated vendor: its own token lifetime and refresh behaviour, and only the scopes it grants.
    const seconds = def.accessTokenSeconds ?? deps.accessTokenSeconds;
    const scopes = def.vendor ? vendorScopes(def) : undefined;
    if (known.rows[0]) {
      // The base URL, the token lifetime or the key may have changed since.
      await c.query(
        sql.updateSandboxApp(known.rows[0].app_id, {
          redirectUris: [callback],
          accessTokenSeconds: seconds,
          jwks,
          scopes: scopes?.allowed ?? [],
          refreshRotates: def.refreshRotates ?? true,
        }),
      );
      return known.rows[0].app_id;
    }
    const secret = def.auth === 'client_secret_basic' || def.auth === 'client_secret_post' ? newSecret() : undefined;
    await c.query(sql.deleteAppByClientId(def.clientId)); // a half-made one (a crash before the commit below)
    const { app: made } = await deps.auth.createApp(
      {
        name: def.title,
        clientId: def.clientId,
        clientSecret: secret,
        redirectUris: [callback],
        public: def.auth === 'none',
        tokenAuthMethod: def.auth === 'none' ? null : def.auth,
        jwks,
        accessTokenSeconds: seconds,
        scopes: scopes?.allowed ?? [],
        refreshRotates: def.refreshRotates ?? true,
      },
      c,
    );
    await c.query(sql.insertSandbox(def.name, made.id));
    if (secret && !deps.vault.ready) {
      deps.log.error(
        { sandbox: def.name },
        'no encryption key (ENCRYPTION_KEY): Tributary cannot keep its secret for this sandbox system, so it cannot connect to it',
      );
    } else {
      await saveRegistration(c, deps.vault, {
        systemId: def.directoryId,
        clientId: def.clientId,
        authMethod: def.auth,
        secret,
        ...(scopes ? { scope: scopes.registration } : {}),
      });
    }
    return made.id;
  });
}
