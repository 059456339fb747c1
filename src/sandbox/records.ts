/**
 * A sandbox system's records, generated from its seed (src/sandbox/generate.ts) and written once:
 * the shared ones (no owner) and each patient's, owned by the patient's user; the patients'
 * passwords are set last (a sign-in names the person's Patient).
 */
import type pg from 'pg';
import type { FastifyBaseLogger } from 'fastify';
import type { Resource } from '@medplum/fhirtypes';
import type { AuthStore } from '../auth/store.ts';
import { writeResources, type BulkDeps } from '../fhir/bulk.ts';
import { inTransaction } from '../storage/transaction.ts';
import { generateSystem, type GenerateOptions } from './generate.ts';
import type { SandboxDefinition } from './systems.ts';
import * as sql from './sql.ts';

export interface RecordsDeps {
  pool: pg.Pool;
  bulk: BulkDeps;
  auth: Pick<AuthStore, 'createUser' | 'findUser' | 'setPassword'>;
  log: FastifyBaseLogger;
  /** SANDBOX_YEARS: years of history at most. */
  years: number;
}

/**
 * The sandbox's records, generated from its seed, written once (re-running writes nothing new).
 * Processes that start together on a new database take turns: one writes a system's records under
 * a session lock, the others wait (polling, so no statement waits on it past its timeout) until
 * the records are there, then go on. A process that dies while writing lets go of the lock.
 */
export async function loadSandboxRecords(deps: RecordsDeps, def: SandboxDefinition, appId: number): Promise<void> {
  const client = await deps.pool.connect();
  const key = `sandbox-records:${def.name}`;
  try {
    for (;;) {
      if ((await client.query<{ loaded: boolean }>(sql.sandboxLoaded(def.name))).rows[0]?.loaded) return;
      if ((await client.query<{ locked: boolean }>(sql.trySessionLock(key))).rows[0].locked) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    try {
      // Written by the process that held the lock before this one took it.
      if ((await client.query<{ loaded: boolean }>(sql.sandboxLoaded(def.name))).rows[0]?.loaded) return;
      await writeSandboxRecords(deps, def, appId);
    } finally {
      await client.query(sql.sessionUnlock(key));
    }
  } finally {
    client.release();
  }
}

async function writeSandboxRecords(deps: RecordsDeps, def: SandboxDefinition, appId: number): Promise<void> {
  const started = Date.now();
  const options = {
    seed: def.seed,
    patients: def.patients,
    idPrefix: def.idPrefix,
    systemName: def.title,
    years: Math.min(def.years ?? deps.years, deps.years),
    ...(def.generate ?? {}),
  } as GenerateOptions;
  const system = def.records ? def.records(options) : generateSystem(options);
  const wanted = (resources: Resource[]) => resources.map((r) => ({ type: r.resourceType, id: r.id!, resource: r }));
  let count = system.shared.length;
  const logins: { userId: string; username: string; password: string }[] = [];
  await inTransaction(deps.pool, async (c) => {
    await writeResources(deps.bulk, c, { partitionId: appId, ownerId: null }, wanted(system.shared));
    for (const p of system.patients) {
      const user = (await deps.auth.createUser(appId, p.personKey)) ?? (await deps.auth.findUser(appId, { appUserId: p.personKey }))!;
      logins.push({ userId: user.id, username: p.username, password: p.password });
      await writeResources(deps.bulk, c, { partitionId: appId, ownerId: user.id }, wanted(p.resources));
      count += p.resources.length;
    }
    await c.query(sql.markLoaded(def.name));
  });
  // Patients can sign in once their records are there (a sign-in names the person's Patient).
  for (const l of logins) await deps.auth.setPassword(appId, l.userId, l.username, l.password);
  deps.log.info({ sandbox: def.name, patients: system.patients.length, resources: count, ms: Date.now() - started }, 'sandbox system loaded');
}
