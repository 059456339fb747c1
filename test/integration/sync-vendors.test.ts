/**
 * The sync's run and store side against the sandbox systems, over real HTTP with real sign-in:
 * - the first sync imports exactly what the system lets a patient app see: per type, the count of
 *   the patient's records in the system's own database (read here, not from the sync), less what
 *   the system refuses (recorded per type, with why, in GET /connect/connections);
 * - a second imports nothing and makes no version (with the default 5-minute checkpoint margin too:
 *   what the margin takes again is compared by content);
 * - a change and an entered-in-error at the source reach the user at the next run; a deletion at the
 *   source reaches the user at the next full fetch of its type (the sweep), as a deleted version;
 * - a search that cannot finish (a 500 for the whole search, as Oracle answers) costs its type this
 *   run, not the run, and the next run fetches it;
 * - one run per connection: a run started while another holds the connection's lock ends at once,
 *   `skipped`, and the operators' summary counts it;
 * - the connection listing shows per type what was fetched, refused or failed, the last full fetch,
 *   the checkpoints, and when the access token expires.
 * The simulated vendors (src/sandbox/vendors/) each get the first-sync, second-sync and mutation
 * checks as they are listed in DEFAULT_SANDBOXES.
 */
import t, { type Test } from 'tap';
import type { Resource } from '@medplum/fhirtypes';
import { buildApp } from '../../src/app.ts';
import { writeResources } from '../../src/fhir/bulk.ts';
import { generateSystem } from '../../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES } from '../../src/sandbox/systems.ts';
import { inTransaction } from '../../src/storage/transaction.ts';
import { createSystemLimiter } from '../../src/sync/rate-limit.ts';
import { localId } from '../../src/sync/mapper.ts';
import pg from 'pg';
import { OUTSIDE_TYPES, RUN_LOCK_SPACE, runLockKey, syncConnection, type SyncDeps } from '../../src/sync/run.ts';
import { syncDeps } from '../../plugins/sync.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';
import { get, signIn } from './connect-support.ts';

const LS = { ...DEFAULT_SANDBOXES.find((d) => d.name === 'lakeside')!, patients: 2 };
// The simulated vendors, each as DEFAULT_SANDBOXES lists it (`vendor` names the profile).
type VendorDef = (typeof DEFAULT_SANDBOXES)[number] & { vendor?: string; generate?: object };
const VENDORS = (DEFAULT_SANDBOXES as readonly VendorDef[]).filter((d) => d.vendor);
const port = await freePort();
const BASE = `http://127.0.0.1:${port}`;
const ADMIN_KEY = 'k'.repeat(40);
const databaseUrl = await testDatabase(t);
const app = await buildApp(
  testConfig(databaseUrl, {
    baseUrl: BASE,
    sandboxes: true,
    sandboxSystems: [LS, ...VENDORS],
    sandboxYears: 1,
    fhirAuth: 'required',
    adminKey: ADMIN_KEY,
  }),
  { logger: false },
);
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());
await app.sandboxesLoaded;
const people = generateSystem({ seed: LS.seed, patients: LS.patients, idPrefix: LS.idPrefix, systemName: LS.title, years: 1 }).patients.filter(
  (p) => p.personKey !== 'shared',
);
const adminHeaders = { authorization: `Bearer ${ADMIN_KEY}` };

// Quick retries; no checkpoint margin unless a test asks for it (the sandbox's records were all
// written a moment ago: with a margin, every increment would take them all again).
const deps: SyncDeps = {
  ...syncDeps(app),
  session: { attempts: 3, backoffMs: 20, timeoutMs: 10_000, concurrency: 4, ratePerSecond: 1000 },
  limiter: createSystemLimiter(app.pg, { ratePerSecond: 1000 }),
  policy: { checkpointMarginSeconds: 0, sweepHours: 24, fullMinutes: 60 },
};
const { app: demo } = await app.auth.createApp({ name: 'Vendors app', redirectUris: ['https://app.example/cb'] });

/** A user of the app connected to a sandbox system as one of its patients. */
async function connected(t: Test, name: string, directoryId: string, username: string, password: string) {
  const user = (await app.auth.createUser(demo.id, name))!;
  const { access_token } = await app.auth.exchangeCode(demo, await app.auth.newCode(demo.id, user.id));
  const callback = await signIn(
    t,
    BASE,
    `${BASE}/connect/system/clinical/${directoryId}?client_id=${demo.clientId}&access_token=${access_token}`,
    username,
    password,
  );
  await get(callback.toString());
  const { rows } = await app.pg.query<{ id: string }>('SELECT id::text FROM trb_connection WHERE user_id = $1', [user.id]);
  return { token: access_token, connectionId: rows[0].id, userId: user.id };
}

/** The sandbox's own records of a patient, per type (its database, as the system holds them). */
async function sourceCounts(sandbox: string, personKey: string): Promise<Map<string, number>> {
  const { rows } = await app.pg.query<{ res_type: string; n: number }>(
    `SELECT r.res_type, count(*)::int AS n FROM hfj_resource r JOIN trb_sandbox s ON s.app_id = r.partition_id JOIN trb_user u ON u.id = r.owner_id AND u.app_id = s.app_id
     WHERE s.name = $1 AND u.app_user_id = $2 AND r.res_deleted_at IS NULL AND r.res_type NOT IN ('Binary', 'Provenance') GROUP BY r.res_type`,
    [sandbox, personKey],
  );
  return new Map(rows.map((r) => [r.res_type, r.n]));
}
/** The user's records per type (outside types, Binary and Provenance left out). */
async function localCounts(userId: string): Promise<Map<string, number>> {
  const { rows } = await app.pg.query<{ res_type: string; n: number }>(
    `SELECT res_type, count(*)::int AS n FROM hfj_resource WHERE partition_id = $1 AND owner_id = $2 AND res_deleted_at IS NULL
       AND res_type NOT IN ('Binary', 'Provenance') AND NOT (res_type = ANY($3::text[])) GROUP BY res_type`,
    [demo.id, userId, OUTSIDE_TYPES],
  );
  return new Map(rows.map((r) => [r.res_type, r.n]));
}
const versions = async () => Number((await app.pg.query('SELECT count(*) AS n FROM hfj_res_ver')).rows[0].n);
const listing = async (token: string) =>
  (await (await fetch(`${BASE}/connect/connections`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
    entry: Record<string, unknown>[];
  };
const faults = (name: string, body?: object) =>
  fetch(`${BASE}/admin/sandbox/${name}/faults`, {
    method: body ? 'PUT' : 'DELETE',
    headers: { ...adminHeaders, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body && JSON.stringify(body),
  });

/** The sandbox patient's records of a type, as stored at the source (oldest first). */
async function sourceRecords(sandbox: string, personKey: string, type: string) {
  const { rows } = await app.pg.query<{ fhir_id: string; json: string; app_id: number; owner: string }>(
    `SELECT r.fhir_id, v.res_text_vc AS json, s.app_id, u.id::text AS owner FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver
       JOIN trb_sandbox s ON s.app_id = r.partition_id JOIN trb_user u ON u.id = r.owner_id AND u.app_id = s.app_id
     WHERE s.name = $1 AND u.app_user_id = $2 AND r.res_type = $3 AND r.res_deleted_at IS NULL ORDER BY r.res_id`,
    [sandbox, personKey, type],
  );
  return rows.map((r) => ({ id: r.fhir_id, resource: JSON.parse(r.json) as Resource, scope: { partitionId: r.app_id, ownerId: r.owner } }));
}
/** Writes (or, with null, deletes) a record at the source, as the system's own users would. */
async function atSource(scope: { partitionId: number; ownerId: string }, type: string, id: string, resource: Resource | null) {
  await inTransaction(app.pg, (c) => writeResources(app.fhir, c, scope, [{ type, id, resource: resource && { ...resource, id } }]));
}

let l: Awaited<ReturnType<typeof connected>>;
const person = people[0];

t.test('the first sync imports exactly what the system holds for the patient, type by type', async (t) => {
  l = await connected(t, 'vendors-lakeside', LS.directoryId, person.username, person.password);
  const run = await syncConnection(deps, l.connectionId);
  t.same([run.status, run.strategy, run.failed, run.deleted], ['succeeded', 'per-type', 0, 0], run.error ?? 'succeeded');
  const source = await sourceCounts(LS.name, person.personKey);
  const local = await localCounts(l.userId);
  t.ok(source.size >= 8, `the patient has records of ${source.size} types`);
  t.same(Object.fromEntries(local), Object.fromEntries(source), 'each type: as many as the source holds');
  const types = (await listing(l.token)).entry[0].types as {
    type: string;
    status: string;
    fetched: number;
    last_full_at: string | null;
    checkpoints: Record<string, string>;
  }[];
  for (const [type, n] of source) {
    const row = types.find((x) => x.type === type);
    t.match(row, { status: 'fetched', fetched: n, last_full_at: String }, `${type}: fetched, ${n}, a full fetch`);
  }
  t.ok(types.find((x) => x.type === 'Observation')?.checkpoints.Observation, 'a checkpoint per query');
});

t.test('a second sync imports nothing and makes no version; the default margin takes some again, by content to no version', async (t) => {
  const before = await versions();
  const run = await syncConnection(deps, l.connectionId);
  t.same([run.status, run.created, run.updated, run.deleted], ['succeeded', 0, 0, 0], run.error ?? 'succeeded');
  t.equal(run.fetched, 0, 'increments only: nothing changed since the checkpoints');
  t.equal(await versions(), before, 'no version');
  // The margin moves the checkpoints the run writes: the run after asks from 5 minutes before it.
  const withMargin = { ...deps, policy: { ...deps.policy!, checkpointMarginSeconds: 300 } };
  await syncConnection(withMargin, l.connectionId);
  const margin = await syncConnection(withMargin, l.connectionId);
  t.ok(margin.fetched > 0, `the 5-minute margin asks again for what changed just before the last pass (${margin.fetched})`);
  t.same([margin.created, margin.updated], [0, 0]);
  t.equal(await versions(), before, 'still no version, and no Provenance');
});

t.test('a change and an entered-in-error reach the user at the next run; a deletion at the next full fetch', async (t) => {
  const [changed, erred, gone] = await sourceRecords(LS.name, person.personKey, 'Observation');
  await atSource(changed.scope, 'Observation', changed.id, { ...changed.resource, note: [{ text: 'Corrected at the source.' }] } as Resource);
  await atSource(erred.scope, 'Observation', erred.id, { ...erred.resource, status: 'entered-in-error' } as Resource);
  await atSource(gone.scope, 'Observation', gone.id, null);
  const sourceNow = (await sourceCounts(LS.name, person.personKey)).get('Observation')!;

  const run = await syncConnection(deps, l.connectionId);
  t.same([run.status, run.updated, run.deleted], ['succeeded', 2, 0], run.error ?? 'succeeded');
  const obs = async (q: string) =>
    (await (await fetch(`${BASE}/fhir/r4/Observation?${q}`, { headers: { authorization: `Bearer ${l.token}` } })).json()) as {
      total?: number;
      entry?: { resource: Resource & { status: string } }[];
    };
  t.equal((await obs('status=entered-in-error&_summary=count')).total, 1, 'the entered-in-error record is there, with its status');
  t.equal((await localCounts(l.userId)).get('Observation'), sourceNow + 1, 'the deleted one stays until a full fetch');

  // The sweep is due (its last full fetch a day ago): Observation is fetched whole, and reconciled.
  await app.pg.query("UPDATE trb_sync_type SET last_full_at = now() - interval '25 hours' WHERE connection_id = $1 AND res_type = 'Observation'", [
    l.connectionId,
  ]);
  const sweep = await syncConnection(deps, l.connectionId);
  t.same([sweep.status, sweep.deleted, sweep.created, sweep.updated], ['succeeded', 1, 0, 0], sweep.error ?? 'succeeded');
  t.equal((await localCounts(l.userId)).get('Observation'), sourceNow, "the record deleted at the source is deleted in the user's");
  const { rows } = await app.pg.query<{ deleted: boolean; versions: number }>(
    `SELECT r.res_deleted_at IS NOT NULL AS deleted, (SELECT count(*)::int FROM hfj_res_ver v WHERE v.res_id = r.res_id) AS versions FROM hfj_resource r
     WHERE r.partition_id = $1 AND r.owner_id = $2 AND r.res_type = 'Observation' AND r.res_deleted_at IS NOT NULL`,
    [demo.id, l.userId],
  );
  t.same(rows, [{ deleted: true, versions: 2 }], 'a new, deleted version: history shows it');
  const again = await syncConnection(deps, l.connectionId);
  t.same([again.created, again.updated, again.deleted], [0, 0, 0], 'and nothing after');
});

t.test('a search that cannot finish costs its type this run, not the run; the next run fetches it', async (t) => {
  // The next requests (the first type's increment, every try) answer 500.
  t.equal((await faults(LS.name, { fail: { count: 3, status: 500 } })).status, 200);
  const run = await syncConnection(deps, l.connectionId);
  await faults(LS.name);
  t.equal(run.status, 'succeeded', run.error ?? 'succeeded');
  const types = (await listing(l.token)).entry[0].types as { type: string; status: string; error: string | null }[];
  const failed = types.filter((x) => x.status === 'failed');
  t.equal(failed.length, 1, `one type failed (${failed.map((x) => x.type)})`);
  t.match(failed[0]?.error, /500|could not|failed/i, 'with why');
  t.ok(types.filter((x) => x.status === 'fetched').length >= 8, 'the others were fetched');
  const next = await syncConnection(deps, l.connectionId);
  t.equal(next.status, 'succeeded');
  const after = (await listing(l.token)).entry[0].types as { type: string; status: string }[];
  t.equal(after.find((x) => x.type === failed[0]?.type)?.status, 'fetched', 'fetched again by the next run');
});

t.test('one run per connection: a run started while another holds the lock ends at once, skipped', async (t) => {
  await app.pg.query('UPDATE trb_sync_type SET last_full_at = NULL WHERE connection_id = $1', [l.connectionId]);
  // Slow answers keep the first run going.
  await faults(LS.name, { slow: { count: 20, ms: 100 } });
  const first = syncConnection(deps, l.connectionId);
  await new Promise((r) => setTimeout(r, 150));
  const started = Date.now();
  const second = await syncConnection(deps, l.connectionId);
  t.equal(second.status, 'skipped');
  t.ok(Date.now() - started < 1000, 'at once');
  t.match(second.error, /still going/);
  const during = await listing(l.token);
  t.equal(during.entry[0].state, 'syncing', 'the app sees the first one syncing (its lock)');
  t.equal((await first).status, 'succeeded');
  await faults(LS.name);
  const summary = await (await fetch(`${BASE}/admin/sync?since=2000-01-01T00:00:00Z`, { headers: adminHeaders })).json();
  t.ok(summary.skipped >= 1, `the operators' summary counts it (${summary.skipped})`);
  const after = await listing(l.token);
  t.match(after.entry[0], { state: 'idle', last_run: { status: 'succeeded' } }, 'the skipped run is not the last run shown');
});

t.test('a run lock of the same key in another database of the server is not this connection syncing', async (t) => {
  // Another Tributary on the same PostgreSQL has connections of the same ids; pg_locks lists its locks too.
  const other = new URL(databaseUrl);
  other.pathname = '/postgres';
  const client = new pg.Client({ connectionString: other.toString() });
  await client.connect();
  t.teardown(() => client.end());
  await client.query('SELECT pg_advisory_lock($1, $2)', [RUN_LOCK_SPACE, runLockKey(l.connectionId)]);
  t.equal((await listing(l.token)).entry[0].state, 'idle');
  const run = await syncConnection(deps, l.connectionId);
  t.equal(run.status, 'succeeded', 'and its runs take their own lock');
});

t.test('a run still marked running whose lock is free was cut off: marked failed, what it stored kept', async (t) => {
  await app.pg.query("INSERT INTO trb_sync_run (connection_id, started_at) VALUES ($1, now() - interval '1 minute')", [l.connectionId]);
  const run = await syncConnection(deps, l.connectionId);
  t.equal(run.status, 'succeeded');
  const runs = (
    await (await fetch(`${BASE}/connect/connections/${l.connectionId}/runs?limit=2`, { headers: { authorization: `Bearer ${l.token}` } })).json()
  ).entry;
  t.match(runs[1], { status: 'failed', error: /cut off.*pages it stored were kept/ });
});

t.test('the listing: per type, and when the access token expires', async (t) => {
  const entry = (await listing(l.token)).entry[0];
  t.match(entry, { access_expires_at: String, types: Array });
  const patient = (entry.types as { type: string; status: string }[]).find((x) => x.type === 'Patient');
  t.match(patient, { status: 'fetched' }, 'the Patient too');
});

type TypeRow = { type: string; status: string; refused_searches: { query: string }[]; checkpoints: Record<string, string> };

/** Whether a source record falls in one of the searches that answered (`category=…`, `intent=…`, `status=…`; none: all). */
function inAnswered(r: Resource, keys: string[]): boolean {
  const variants = keys.map((k) => (k.includes('?') ? new URLSearchParams(k.slice(k.indexOf('?') + 1)) : undefined));
  if (variants.some((v) => !v)) return true;
  const codes = (v: unknown) => JSON.stringify(v ?? '');
  return variants.some((v) =>
    [...v!].every(([name, value]) =>
      name === 'category'
        ? codes((r as { category?: unknown }).category).includes(`"${value}"`)
        : String((r as unknown as Record<string, unknown>)[name]) === value,
    ),
  );
}

t.test(
  'the simulated vendors: what each lets a patient app see, exactly; nothing again; a change, an entered-in-error and a deletion reach the user',
  { skip: VENDORS.length ? false : 'no simulated vendor is among the sandbox systems yet' },
  async (t) => {
    for (const def of VENDORS) {
      await t.test(def.name, async (t) => {
        // The credentials (the records themselves are read from the vendor's database).
        const gen = generateSystem({
          seed: def.seed,
          patients: def.patients,
          idPrefix: def.idPrefix,
          systemName: def.title,
          years: 1,
          ...(def.generate ?? {}),
        } as Parameters<typeof generateSystem>[0]);
        const who = gen.patients.filter((p) => p.personKey !== 'shared')[0];
        const c = await connected(t, `vendors-${def.name}`, def.directoryId, who.username, who.password);
        const run = await syncConnection(deps, c.connectionId);
        t.not(run.status, 'needs_reauth', run.error ?? '');
        const types = (await listing(c.token)).entry[0].types as TypeRow[];
        /** The source's records of a type the app may see: those of the searches that answered (all, when none was refused). */
        const visible = async (type: string, row: TypeRow, n: number) =>
          row.refused_searches.length
            ? (await sourceRecords(def.name, who.personKey, type)).filter((r) => inAnswered(r.resource, Object.keys(row.checkpoints))).length
            : n;
        const local = await localCounts(c.userId);
        for (const [type, n] of await sourceCounts(def.name, who.personKey)) {
          const row = types.find((x) => x.type === type);
          if (!row || row.status !== 'fetched') {
            t.equal(local.get(type) ?? 0, 0, `${type}: ${row?.status ?? 'not listed'} at ${def.name}, so none`);
            continue;
          }
          t.equal(local.get(type) ?? 0, await visible(type, row, n), `${type}: as many as ${def.name} lets the app see`);
        }
        // Visible: each type with its status; a refusal with the system's reason, so that "no data"
        // (fetched, 0) and "not allowed here" differ.
        for (const row of types as (TypeRow & { refusal: { kind: string; status: number; diagnostics: string } | null })[]) {
          t.ok(['fetched', 'refused', 'not-granted', 'failed'].includes(row.status), `${row.type}: ${row.status}`);
          if (row.status === 'refused' || row.status === 'not-granted')
            t.match(row.refusal, { kind: String, status: Number, diagnostics: String }, `${row.type}: why (${row.refusal?.kind})`);
        }
        const before = await versions();
        const second = await syncConnection(deps, c.connectionId);
        t.same([second.created, second.updated, second.deleted], [0, 0, 0], `${def.name}: a second run imports nothing`);
        t.equal(await versions(), before, 'and makes no version');

        // Changes at the source through the vendor's admin endpoint: a type the patient has many of.
        const counts = await sourceCounts(def.name, who.personKey);
        const type = counts.has('Observation') ? 'Observation' : 'ExplanationOfBenefit';
        const mutate = async (action: string) => {
          const res = await fetch(`${BASE}/admin/sandbox/${def.name}/records`, {
            method: 'POST',
            headers: { ...adminHeaders, 'content-type': 'application/json' },
            body: JSON.stringify({ username: who.username, type, action, count: 1 }),
          });
          t.equal(res.status, 200, `${action} at the source`);
          return ((await res.json()) as { ids: string[] }).ids;
        };
        // (Each action picks the oldest record not yet in its state: the deletion first, so that it
        // takes another record than the two updates.)
        const gone = await mutate('delete');
        const changed = await mutate('change');
        const erred = await mutate('enter-in-error');
        t.same([changed.length, erred.length, gone.length], [1, 1, 1], `one ${type} changed, one entered in error, one deleted`);
        // They reach the user at the next run that asks for them: an increment where the vendor lists
        // _lastUpdated, else the next full fetch; the deletion at the next full fetch.
        await app.pg.query('UPDATE trb_sync_type SET last_full_at = NULL WHERE connection_id = $1', [c.connectionId]);
        const next = await syncConnection(deps, c.connectionId);
        const updates = new Set([...changed, ...erred]).size;
        t.same(
          [next.status, next.updated, next.deleted, next.created],
          ['succeeded', updates, 1, 0],
          `${def.name}: the change and the entered-in-error as updates (${updates} records), the deletion as a deleted version`,
        );
        const origin = { userId: c.userId, systemId: def.directoryId, systemName: def.title, base: '' };
        const { rows } = await app.pg.query<{ json: string }>(
          `SELECT v.res_text_vc AS json FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver WHERE r.partition_id = $1 AND r.res_type = $2 AND r.fhir_id = $3`,
          [demo.id, type, localId(origin, type, erred[0])],
        );
        t.equal(JSON.parse(rows[0]?.json ?? '{}').status, 'entered-in-error', 'the entered-in-error record is stored with its status, not deleted');
        const row = ((await listing(c.token)).entry[0].types as TypeRow[]).find((x) => x.type === type)!;
        t.equal(
          (await localCounts(c.userId)).get(type),
          await visible(type, row, (await sourceCounts(def.name, who.personKey)).get(type)!),
          `${type}: as many as the source lets the app see now`,
        );
      });
    }
  },
);

t.test(
  "Oracle's whole-search 500 (one bad Procedure of a patient) costs that patient's Procedures, not the run",
  { skip: VENDORS.some((d) => d.name === 'oracle') ? false : 'the oracle vendor is not among the sandbox systems' },
  async (t) => {
    const def = VENDORS.find((d) => d.name === 'oracle')!;
    const gen = generateSystem({
      seed: def.seed,
      patients: def.patients,
      idPrefix: def.idPrefix,
      systemName: def.title,
      years: 1,
      ...(def.generate ?? {}),
    } as Parameters<typeof generateSystem>[0]);
    // The patient whose chart holds the Procedure without status (src/sandbox/generate.ts: chart 1, the first ordinary patient).
    const who = gen.patients.filter((p) => p.personKey !== 'shared')[0];
    const c = await connected(t, 'vendors-oracle-500', def.directoryId, who.username, who.password);
    const run = await syncConnection(deps, c.connectionId);
    t.equal(run.status, 'succeeded', run.error ?? 'succeeded');
    const types = (await listing(c.token)).entry[0].types as { type: string; status: string; error: string | null }[];
    t.match(
      types.find((x) => x.type === 'Procedure'),
      { status: 'failed', error: /500|could not/i },
      'Procedure: failed, with why',
    );
    t.ok(types.filter((x) => x.status === 'fetched').length >= 5, 'the other types fetched');
    t.equal((await localCounts(c.userId)).get('Observation'), (await sourceCounts(def.name, who.personKey)).get('Observation'), 'Observation: exact');
  },
);
