/**
 * For the request side's tests (sync-rate-limit, sync-tokens, sync-attachments): a listening server
 * with the sandbox systems, users of an app connected to them through the real connect flow, and a
 * SourceSession for a connection built as a sync run builds it (its sealed tokens, its system's
 * client; refreshed tokens stored back), with every request it sends logged.
 */
import type { ConnectionRow } from '../../../src/sync/run-types.ts';
import type { Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../src/app.ts';
import type { Config } from '../../../src/config.ts';
import { clientForSystem, connectionSealKey, type Tokens } from '../../../src/connect/client.ts';
import type { OutboundFetch } from '../../../src/net/outbound.ts';
import { generateSystem } from '../../../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES, type SandboxDefinition } from '../../../src/sandbox/systems.ts';
import type { SystemLimiter } from '../../../src/sync/rate-limit.ts';
import { SourceSession, type SessionOptions } from '../../../src/sync/session.ts';
import { testConfig, testDatabase } from '../../helper.ts';
import { freePort } from '../../pg.ts';
import { get, signIn } from '../../integration/connect-support.ts';

export const ADMIN_KEY = 'k'.repeat(40);
export const DEFS = DEFAULT_SANDBOXES.map((d) => ({ ...d, patients: 2 }));
export const QUICK: SessionOptions = { attempts: 4, backoffMs: 20, timeoutMs: 10_000, concurrency: 4, ratePerSecond: 1000 };

export interface Server {
  app: FastifyInstance;
  base: string;
  databaseUrl: string;
  /** The sandbox's FHIR base. */
  fhirBase(def: SandboxDefinition): string;
  /** An admin call at the sandbox (faults, expire-access-tokens, revoke-refresh-tokens). */
  admin(def: SandboxDefinition, path: string, body?: object): Promise<Response>;
  /** A user of the test app connected to `def` as its patient number `n`: the connection's id, the user's, the user's access token (for this server's FHIR API) and the patient's person key at the sandbox. */
  connect(t: Test, def: SandboxDefinition, n: number): Promise<{ connectionId: string; userId: string; token: string; personKey: string }>;
}

/** The server, listening on a free port, its sandboxes loaded; closed at teardown. */
export async function startServer(t: Test, overrides: Partial<Config> = {}): Promise<Server> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const databaseUrl = await testDatabase(t);
  const app = await buildApp(
    testConfig(databaseUrl, { baseUrl: base, sandboxes: true, sandboxSystems: DEFS, fhirAuth: 'required', adminKey: ADMIN_KEY, ...overrides }),
    { logger: false },
  );
  await app.listen({ port, host: '127.0.0.1' });
  t.teardown(() => app.close());
  await app.sandboxesLoaded;
  const { app: client } = await app.auth.createApp({ name: 'Request-side test app', redirectUris: ['https://app.example/cb'] });
  let users = 0;
  return {
    app,
    base,
    databaseUrl,
    fhirBase: (def) => `${base}/sandbox/${def.name}/fhir/r4`,
    admin: (def, path, body) =>
      fetch(`${base}/admin/sandbox/${def.name}/${path}`, {
        method: body ? 'PUT' : 'POST',
        headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body && JSON.stringify(body),
      }),
    async connect(t, def, n) {
      const person = generateSystem({ seed: def.seed, patients: def.patients, idPrefix: def.idPrefix, systemName: def.title }).patients.filter(
        (p) => p.personKey !== 'shared',
      )[n];
      const user = (await app.auth.createUser(client.id, `s2-user-${++users}`))!;
      const { access_token } = await app.auth.exchangeCode(client, await app.auth.newCode(client.id, user.id));
      const callback = await signIn(
        t,
        base,
        `${base}/connect/system/clinical/${def.directoryId}?client_id=${client.clientId}&access_token=${access_token}`,
        person.username,
        person.password,
      );
      await get(callback.toString());
      const { rows } = await app.pg.query<{ id: string }>('SELECT id::text FROM trb_connection WHERE user_id = $1 AND system_id = $2', [
        user.id,
        def.directoryId,
      ]);
      return { connectionId: rows[0].id, userId: user.id, token: access_token, personKey: person.personKey };
    },
  };
}

let seq = 0;

/** One request a session sent: when, where, with which access token. */
export interface Sent {
  /** The order of this among the sent requests and the stored tokens. */
  seq: number;
  at: number;
  url: string;
  method: string;
  accept?: string;
  token?: string;
  status?: number;
}

export interface Built {
  session: SourceSession;
  patientId: string;
  base: string;
  /** Every request the session sent (token calls too), in order. */
  sent: Sent[];
  /** The tokens as onRefreshed stored them, in order, with `seq` once stored. */
  stored: (Tokens & { seq: number })[];
}

/**
 * A session for the connection as a sync run makes it (the app's outbound fetch, logged); `app` is
 * the process whose pool and vault it uses (another app on the same database stands for another
 * worker process).
 */
export async function sessionFor(app: FastifyInstance, connectionId: string, o: SessionOptions = QUICK, limiter?: SystemLimiter): Promise<Built> {
  const { rows } = await app.pg.query<Omit<ConnectionRow, 'app_id' | 'scope'>>(
    `SELECT c.user_id, c.system_id, c.patient_id, c.access_token_sealed, c.refresh_token_sealed, c.access_expires_at, s.name, s.resource_url, s.vendor
     FROM trb_connection c JOIN trb_system s ON s.id = c.system_id WHERE c.id = $1`,
    [connectionId],
  );
  const c = rows[0];
  const sealKey = connectionSealKey(c.user_id, c.system_id);
  const sent: Sent[] = [];
  const stored: (Tokens & { seq: number })[] = [];
  const logged: OutboundFetch = async (url, init) => {
    const headers = new Headers(init?.headers);
    const auth = headers.get('authorization');
    const entry: Sent = {
      seq: ++seq,
      at: Date.now(),
      url: String(url),
      method: init?.method ?? 'GET',
      accept: headers.get('accept') ?? undefined,
      token: auth?.startsWith('Bearer ') ? auth.slice(7) : undefined,
    };
    sent.push(entry);
    const res = await app.outbound.fetch(url, init);
    entry.status = res.status;
    return res;
  };
  const sc = await clientForSystem(
    app.pg,
    app.vault,
    { id: c.system_id, name: c.name, resource_url: c.resource_url, vendor: c.vendor },
    new URL(app.config.baseUrl).origin,
    () => app.clientKeys.load(),
    logged,
    app.discovery,
  );
  const tokens: Tokens = {
    accessToken: app.vault.decrypt(c.access_token_sealed, sealKey, 'connection-token'),
    refreshToken: c.refresh_token_sealed ? app.vault.decrypt(c.refresh_token_sealed, sealKey, 'connection-token') : undefined,
    expiresAt: c.access_expires_at,
    scope: '',
  };
  const session = new SourceSession(
    sc,
    tokens,
    async (t) => {
      await app.pg.query(
        'UPDATE trb_connection SET access_token_sealed = $2, refresh_token_sealed = coalesce($3, refresh_token_sealed), access_expires_at = $4 WHERE id = $1',
        [
          connectionId,
          app.vault.encrypt(t.accessToken, sealKey, 'connection-token'),
          t.refreshToken ? app.vault.encrypt(t.refreshToken, sealKey, 'connection-token') : null,
          t.expiresAt,
        ],
      );
      stored.push({ ...t, seq: ++seq });
    },
    o,
    limiter,
    app.syncShared.sessions,
  );
  return { session, patientId: c.patient_id!, base: c.resource_url.replace(/\/+$/, ''), sent, stored };
}

/** Another process on the same database: an app without sandboxes or listening, sharing the server's tables. */
export async function secondProcess(t: Test, server: Server): Promise<FastifyInstance> {
  const other = await buildApp(
    testConfig(server.databaseUrl, { baseUrl: server.base, sandboxes: false, fhirAuth: 'required', adminKey: ADMIN_KEY }),
    { logger: false },
  );
  await other.ready();
  t.teardown(() => other.close());
  return other;
}
