/**
 * The schema against Citus's rules, where Citus is absent (docs/scaling.md).
 *
 * 1. The live schema, after every migration, read from PostgreSQL's catalog: every table is of one
 *    kind (src/storage/distribution.ts); a distributed table has owner_id, NOT NULL, in every
 *    primary key, unique index and exclusion constraint; a foreign key between distributed tables
 *    pairs owner_id with owner_id (colocated); none runs from a distributed table to a coordinator
 *    table, nor from a reference table to a distributed or coordinator one; no trigger on a
 *    distributed table. The same check is shown to catch each kind of fault.
 * 2. Routing: the distributed tables are made hash partitions by owner_id (32 each), which
 *    PostgreSQL prunes as Citus routes, and which itself refuses a unique index without the key.
 *    A user then works through the FHIR API with their token: writes, reads, history, searches of
 *    every kind, includes, _has, paging, transactions, $everything, the merged view, Linkage, a
 *    de-duplication run. Every statement that reads the person's tables is planned again with its
 *    own values, and its plan must read only the partitions of that person's key (and of the app's
 *    own records and the directory's, which a user's search may show). So must the SQL modules'
 *    statements of one person's records (sync, sandbox, connect, de-duplication).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import t, { type Test } from 'tap';
import { buildApp } from '../../src/app.ts';
import { migrate } from '../../src/storage/migrate.ts';
import { DIRECTORY_SCOPE } from '../../src/fhir/ports.ts';
import { DISTRIBUTED_TABLES, REFERENCE_TABLES, ownerKey, tableKind } from '../../src/storage/distribution.ts';
import { dedupPerson } from '../../src/dedup/run.ts';
import { DEFAULT_SETTINGS } from '../../src/dedup/rules.ts';
import * as dedupSql from '../../src/dedup/sql.ts';
import * as syncSql from '../../src/sync/sql/records.ts';
import * as sandboxSql from '../../src/sandbox/sql.ts';
import * as connectSql from '../../src/connect/sql.ts';
import type { Sql } from '../../src/storage/sql.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { FHIR, FHIR_JSON, LOINC, type Json, entries, linkOf, send } from './search-support.ts';

const DIST: readonly string[] = DISTRIBUTED_TABLES;

/** What Citus would refuse in the schema `client` sees, one line each. */
async function schemaProblems(client: pg.ClientBase): Promise<string[]> {
  const problems: string[] = [];
  const tables = (
    await client.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`,
    )
  ).rows.map((r) => r.name);
  for (const listed of [...DIST, ...REFERENCE_TABLES]) if (!tables.includes(listed)) problems.push(`${listed} is listed but does not exist`);

  for (const table of tables.filter((x) => tableKind(x) === 'distributed')) {
    const col = (
      await client.query<{ attnum: number; attnotnull: boolean; type: string }>(
        `SELECT attnum, attnotnull, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'owner_id' AND NOT attisdropped`,
        [table],
      )
    ).rows[0];
    if (!col) {
      problems.push(`${table} has no owner_id`);
      continue;
    }
    if (!col.attnotnull) problems.push(`${table}.owner_id may be NULL`);
    if (col.type !== 'bigint') problems.push(`${table}.owner_id is ${col.type}, not bigint (colocated tables share the key's type)`);
    const uniques = await client.query<{ name: string; keys: string }>(
      `SELECT i.indexrelid::regclass::text AS name, i.indkey::text AS keys FROM pg_index i WHERE i.indrelid = $1::regclass AND i.indisunique`,
      [table],
    );
    for (const u of uniques.rows)
      if (!u.keys.split(' ').map(Number).includes(col.attnum)) problems.push(`${table}: unique index ${u.name} lacks owner_id`);
    const exclusions = await client.query<{ name: string; keys: number[] }>(
      `SELECT conname AS name, conkey AS keys FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'x'`,
      [table],
    );
    for (const x of exclusions.rows) if (!x.keys.includes(col.attnum)) problems.push(`${table}: exclusion constraint ${x.name} lacks owner_id`);
    const triggers = await client.query<{ name: string }>(`SELECT tgname AS name FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`, [
      table,
    ]);
    for (const tr of triggers.rows) problems.push(`${table}: trigger ${tr.name} on a distributed table`);
  }

  const fks = await client.query<{ name: string; src: string; dst: string; src_cols: string[]; dst_cols: string[] }>(
    `SELECT c.conname AS name, c.conrelid::regclass::text AS src, c.confrelid::regclass::text AS dst,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o) AS src_cols,
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o) AS dst_cols
     FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.contype = 'f' AND n.nspname = 'public'`,
  );
  for (const fk of fks.rows) {
    const [from, to] = [tableKind(fk.src), tableKind(fk.dst)];
    const what = `foreign key ${fk.name} (${fk.src} -> ${fk.dst})`;
    if (from === 'distributed' && to === 'distributed') {
      const i = fk.src_cols.indexOf('owner_id');
      if (i < 0 || fk.dst_cols[i] !== 'owner_id') problems.push(`${what} does not pair owner_id with owner_id`);
    } else if (from === 'distributed' && to === 'local') problems.push(`${what} runs from a distributed table to a coordinator table`);
    else if (from === 'reference' && to !== 'reference') problems.push(`${what} runs from a reference table to a ${to} table`);
    else if (from === 'local' && to === 'distributed') problems.push(`${what} runs from a coordinator table to a distributed table`);
  }
  return problems;
}

const url = await testDatabase(t);
const admin = new pg.Pool({ connectionString: url, max: 2 });
t.teardown(() => admin.end());
await migrate(admin);

// --- Routing: the person's tables as hash partitions by owner_id ---------------------------------

const MODULUS = 32;

/** Remakes each distributed table as MODULUS hash partitions by owner_id, keeping its indexes' names and foreign keys. */
async function partitionByOwner(client: pg.ClientBase): Promise<void> {
  await client.query('BEGIN');
  const fks = (
    await client.query<{ name: string; tbl: string; def: string }>(
      `SELECT conname AS name, conrelid::regclass::text AS tbl, pg_get_constraintdef(oid) AS def FROM pg_constraint
       WHERE contype = 'f' AND (conrelid::regclass::text = ANY($1) OR confrelid::regclass::text = ANY($1))`,
      [DIST],
    )
  ).rows;
  for (const fk of fks) await client.query(`ALTER TABLE ${fk.tbl} DROP CONSTRAINT ${fk.name}`);
  for (const table of DIST) {
    const indexes = (
      await client.query<{ name: string }>(`SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = $1::regclass`, [table])
    ).rows;
    const constraints = (
      await client.query<{ name: string }>(`SELECT conname AS name FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('p', 'u')`, [
        table,
      ])
    ).rows;
    const defs = new Map<string, string>();
    for (const ix of indexes) {
      const def = (await client.query<{ d: string }>(`SELECT pg_get_indexdef($1::regclass) AS d`, [ix.name])).rows[0].d;
      defs.set(def.replace(/ INDEX \S+ ON \S+ /, ' INDEX ON '), ix.name);
    }
    for (const c of constraints) await client.query(`ALTER TABLE ${table} RENAME CONSTRAINT ${c.name} TO ${c.name}__plain`);
    for (const ix of indexes)
      if (!constraints.some((c) => c.name === ix.name)) await client.query(`ALTER INDEX ${ix.name} RENAME TO ${ix.name}__plain`);
    await client.query(`ALTER TABLE ${table} RENAME TO ${table}__plain`);
    // PostgreSQL refuses here a unique index of the table without owner_id, as Citus would.
    await client.query(`CREATE TABLE ${table} (LIKE ${table}__plain INCLUDING ALL) PARTITION BY HASH (owner_id)`);
    for (let r = 0; r < MODULUS; r++)
      await client.query(`CREATE TABLE ${table}__p${r} PARTITION OF ${table} FOR VALUES WITH (MODULUS ${MODULUS}, REMAINDER ${r})`);
    await client.query(`DROP TABLE ${table}__plain`);
    // The indexes under their names again (the code names some, as the 409 of an id in use does).
    for (const ix of (
      await client.query<{ name: string }>(`SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = $1::regclass`, [table])
    ).rows) {
      const def = (await client.query<{ d: string }>(`SELECT pg_get_indexdef($1::regclass) AS d`, [ix.name])).rows[0].d;
      const original = defs.get(def.replace(/ INDEX \S+ ON \S+ /, ' INDEX ON ').replace(/ ON ONLY /, ' ON '));
      if (original && original !== ix.name) {
        const isConstraint = (await client.query(`SELECT 1 FROM pg_constraint WHERE conname = $1 AND conrelid = $2::regclass`, [ix.name, table]))
          .rowCount;
        await client.query(
          isConstraint ? `ALTER TABLE ${table} RENAME CONSTRAINT ${ix.name} TO ${original}` : `ALTER INDEX ${ix.name} RENAME TO ${original}`,
        );
      }
    }
  }
  for (const fk of fks) await client.query(`ALTER TABLE ${fk.tbl} ADD CONSTRAINT ${fk.name} ${fk.def}`);
  await client.query('COMMIT');
}

const routedUrl = await testDatabase(t);
{
  const pool = new pg.Pool({ connectionString: routedUrl, max: 1 });
  await migrate(pool);
  const client = await pool.connect();
  try {
    await partitionByOwner(client);
  } finally {
    client.release();
    await pool.end();
  }
}

interface Captured {
  text: string;
  values: unknown[];
}
const capture = new AsyncLocalStorage<Captured[]>();
const clientQuery = pg.Client.prototype.query as (...args: unknown[]) => unknown;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  const into = capture.getStore();
  const [config, values] = args as [unknown, unknown];
  if (into) {
    const text = typeof config === 'string' ? config : (config as { text?: unknown } | null)?.text;
    const vals = (typeof config === 'object' && (config as { values?: unknown[] } | null)?.values) || (Array.isArray(values) ? values : []);
    if (typeof text === 'string') into.push({ text, values: vals as unknown[] });
  }
  return clientQuery.apply(this, args);
} as typeof pg.Client.prototype.query;
t.teardown(() => {
  pg.Client.prototype.query = clientQuery as typeof pg.Client.prototype.query;
});

const app = await buildApp(testConfig(routedUrl, { fhirAuth: 'required' }), { logger: false });
t.teardown(() => app.close());
await app.ready();
const checker = new pg.Pool({ connectionString: routedUrl, max: 1 });
t.teardown(() => checker.end());

const { app: tenant } = await app.auth.createApp({ name: 'Routing' });
const person = (await app.auth.createUser(tenant.id, 'routed'))!;
const other = (await app.auth.createUser(tenant.id, 'elsewhere'))!;
const tokenOf = async (userId: string) => (await app.auth.exchangeCode(tenant, await app.auth.newCode(tenant.id, userId))).access_token;
const headers = { authorization: `Bearer ${await tokenOf(person.id)}` };
const otherHeaders = { authorization: `Bearer ${await tokenOf(other.id)}` };

/** The partitions of each distributed table that hold the given keys. */
async function partitionsOf(keys: string[]): Promise<Map<string, Set<number>>> {
  const out = new Map<string, Set<number>>();
  for (const table of DIST) {
    const { rows } = await checker.query<{ r: number }>(
      `SELECT r FROM generate_series(0, ${MODULUS - 1}) r WHERE EXISTS (SELECT 1 FROM unnest($2::bigint[]) k WHERE satisfies_hash_partition($1::regclass, ${MODULUS}, r, k))`,
      [table, keys],
    );
    out.set(table, new Set(rows.map((x) => x.r)));
  }
  return out;
}
const allowed = await partitionsOf([person.id, ownerKey(tenant.id, null), ownerKey(DIRECTORY_SCOPE.partitionId, null)]);
const TOUCHES = new RegExp(`\\b(${DIST.join('|')})\\b`);

/**
 * The distributed partitions a statement read, by table, beyond what the person may reach. It runs
 * under EXPLAIN ANALYZE in a transaction rolled back, so that what it read is what a plan pruned
 * when it was made (from constants) or as it ran (from values found in the statement itself: a
 * lateral join on owner_id, a correlated subquery), as Citus routes a statement to shards. A write
 * whose rows are there now (it ran) runs again with those rows out of the way, in the same
 * transaction (foreign keys off: session_replication_role).
 */
async function strayPartitions(q: Captured): Promise<string[]> {
  const client = await checker.connect();
  let plan: Json[] | undefined;
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL session_replication_role = replica');
    for (let tries = 0; !plan; tries++) {
      await client.query('SAVEPOINT again');
      try {
        plan = (await client.query({ text: `EXPLAIN (ANALYZE, FORMAT JSON) ${q.text}`, values: q.values })).rows[0]['QUERY PLAN'];
      } catch (err) {
        const { code, table, detail } = err as { code?: string; table?: string; detail?: string };
        const key = /^Key \((.*)\)=\((.*)\) already exists/.exec(detail ?? '');
        if (code !== '23505' || !table || !key || tries > 50) throw err;
        await client.query('ROLLBACK TO SAVEPOINT again');
        const cols = key[1].split(', ');
        const vals = key[2].split(', ');
        await client.query(`DELETE FROM ${table} WHERE ${cols.map((c, i) => `${c}::text = $${i + 1}`).join(' AND ')}`, vals);
      }
    }
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
  const strays = new Set<string>();
  const walk = (node: Json) => {
    const rel = node['Relation Name'];
    const m = typeof rel === 'string' ? /^(.*)__p(\d+)$/.exec(rel) : null;
    if (m && node['Actual Loops'] > 0 && !allowed.get(m[1])?.has(Number(m[2]))) strays.add(m[1]);
    for (const child of node.Plans ?? []) walk(child);
  };
  for (const p of plan) walk(p.Plan);
  return [...strays].sort();
}

const checked: string[] = [];
const everyShard: string[] = [];
/** Runs `what` and checks the routing of every statement it made of the person's tables. */
async function routed(t: Test, label: string, what: () => Promise<unknown>): Promise<void> {
  const made: Captured[] = [];
  await capture.run(made, what);
  let n = 0;
  for (const q of made) {
    if (!TOUCHES.test(q.text)) continue;
    // A statement that says it reads every shard (an id of the client's choosing is the app's).
    if (/^\s*\/\* every shard:/.test(q.text)) {
      everyShard.push(label);
      continue;
    }
    if (!/^\s*(WITH|SELECT|UPDATE|DELETE|INSERT)\b/i.test(q.text)) continue;
    n++;
    const strays = await strayPartitions(q);
    t.same(
      strays,
      [],
      `${label}: one person's shard${strays.length ? `; read elsewhere: ${q.text.replace(/\s+/g, ' ').slice(0, Number(process.env.CITUS_SQL_CHARS ?? 400))}` : ''}`,
    );
  }
  checked.push(`${label}: ${n}`);
}

const req = (method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH', path: string, payload?: unknown, h: Record<string, string> = headers) =>
  send(app, {
    method,
    url: `${FHIR}/${path}`,
    headers: payload === undefined ? h : { ...h, 'content-type': method === 'PATCH' ? 'application/json-patch+json' : FHIR_JSON },
    payload: payload as object,
  });

t.test('the live schema keeps the rules of a Citus distribution', async (t) => {
  const client = await admin.connect();
  try {
    t.same(await schemaProblems(client), [], 'nothing Citus would refuse');
    const kinds = (await client.query<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'`)).rows.map(
      (r) => r.name,
    );
    t.ok(
      kinds.filter((k) => tableKind(k) === 'distributed').length === DIST.length,
      `every distributed table exists (${DIST.length}), and the rest are reference or coordinator tables`,
    );
  } finally {
    client.release();
  }
});

t.test('the check catches each kind of fault', async (t) => {
  const client = await admin.connect();
  try {
    await client.query('BEGIN');
    await client.query('CREATE UNIQUE INDEX bad_unique ON hfj_spidx_token (sp_id)');
    await client.query(
      'ALTER TABLE hfj_res_tag ADD CONSTRAINT bad_colocation FOREIGN KEY (res_id, owner_id) REFERENCES hfj_resource (owner_id, res_id)',
    );
    await client.query('ALTER TABLE trb_dedup_link ADD CONSTRAINT bad_to_local FOREIGN KEY (partition_id) REFERENCES trb_app (id)');
    await client.query('ALTER TABLE hfj_tag_def ADD COLUMN bad_res bigint, ADD COLUMN bad_owner bigint');
    await client.query(
      'ALTER TABLE hfj_tag_def ADD CONSTRAINT bad_from_reference FOREIGN KEY (bad_res, bad_owner) REFERENCES hfj_resource (res_id, owner_id)',
    );
    await client.query('ALTER TABLE trb_connection ADD COLUMN bad_res bigint, ADD COLUMN bad_owner bigint');
    await client.query(
      'ALTER TABLE trb_connection ADD CONSTRAINT bad_from_local FOREIGN KEY (bad_res, bad_owner) REFERENCES hfj_resource (res_id, owner_id)',
    );
    await client.query('CREATE FUNCTION bad_fn() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$');
    await client.query('CREATE TRIGGER bad_trigger BEFORE INSERT ON hfj_res_ver FOR EACH ROW EXECUTE FUNCTION bad_fn()');
    const problems = await schemaProblems(client);
    await client.query('ROLLBACK');
    for (const [fault, line] of [
      ['a unique index without the key', /hfj_spidx_token: unique index bad_unique lacks owner_id/],
      ['a foreign key between distributed tables not on the key', /bad_colocation .* does not pair owner_id/],
      ['a foreign key to a coordinator table', /bad_to_local .* from a distributed table to a coordinator table/],
      ['a foreign key from a reference table', /bad_from_reference .* from a reference table to a distributed table/],
      ['a foreign key from a coordinator table', /bad_from_local .* from a coordinator table to a distributed table/],
      ['a trigger on a distributed table', /hfj_res_ver: trigger bad_trigger/],
    ] as const)
      t.ok(
        problems.some((p) => line.test(p)),
        fault,
      );
    t.same(await schemaProblems(client), [], 'and the schema is as it was');
  } finally {
    client.release();
  }
});

t.test("a person's work through the API stays on their shard", async (t) => {
  let patient = '';
  let obs = '';
  await routed(t, 'create', async () => {
    const p = await req('POST', 'Patient', {
      resourceType: 'Patient',
      name: [{ family: 'Routed', given: ['Rae'] }],
      birthDate: '1970-01-02',
      gender: 'female',
    });
    t.equal(p.statusCode, 201, 'Patient created');
    patient = p.json().id;
    const pr = await req('POST', 'Practitioner', { resourceType: 'Practitioner', name: [{ family: 'Doctor' }] });
    for (let i = 0; i < 3; i++) {
      const o = await req('POST', 'Observation', {
        resourceType: 'Observation',
        status: 'final',
        meta: { tag: [{ system: 'urn:test', code: 'routed' }] },
        code: { coding: [{ system: LOINC, code: '8867-4' }] },
        subject: { reference: `Patient/${patient}` },
        performer: [{ reference: `Practitioner/${pr.json().id}` }],
        effectiveDateTime: `2024-0${i + 1}-01T10:00:00Z`,
        valueQuantity: { value: 60 + i, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
      });
      obs = o.json().id;
    }
    await req('POST', 'Condition', {
      resourceType: 'Condition',
      subject: { reference: `Patient/${patient}` },
      code: { coding: [{ system: 'http://snomed.info/sct', code: '38341003' }], text: 'Hypertension' },
      onsetDateTime: '2020-01-01',
    });
  });
  await routed(t, 'update, patch, PUT with an id of the client', async () => {
    t.equal(
      (
        await req('PUT', `Observation/${obs}`, {
          resourceType: 'Observation',
          id: obs,
          status: 'amended',
          code: { coding: [{ system: LOINC, code: '8867-4' }] },
          subject: { reference: `Patient/${patient}` },
        })
      ).statusCode,
      200,
    );
    t.equal((await req('PATCH', `Patient/${patient}`, [{ op: 'add', path: '/active', value: true }])).statusCode, 200);
    t.equal((await req('PUT', 'Patient/chosen-id', { resourceType: 'Patient', id: 'chosen-id' })).statusCode, 201);
  });
  t.equal(
    (await req('PUT', 'Patient/chosen-id', { resourceType: 'Patient', id: 'chosen-id' }, otherHeaders)).statusCode,
    409,
    'another person cannot take that id',
  );
  await routed(t, 'read, vread, history', async () => {
    t.equal((await req('GET', `Patient/${patient}`)).statusCode, 200);
    t.equal((await req('GET', `Observation/${obs}/_history/1`)).statusCode, 200);
    t.equal((await req('GET', `Observation/${obs}/_history`)).json().total, 2);
    await req('GET', 'Observation/_history');
    await req('GET', '_history?_count=2');
  });
  const searches = [
    `Observation?code=${LOINC}|8867-4`,
    `Observation?patient=${patient}&code=${LOINC}|8867-4`,
    `Observation?subject=Patient/${patient}&date=ge2024-02-01`,
    'Observation?subject:Patient.name=Routed',
    'Observation?value-quantity=gt60',
    'Observation?_tag=urn:test|routed&_sort=-date&_count=1',
    `Observation?_include=Observation:patient&_include=Observation:performer`,
    'Patient?_revinclude=Observation:subject',
    `Patient?_has:Observation:patient:code=${LOINC}|8867-4`,
    'Patient?name=rout&birthdate=1970-01-02&gender=female',
    `Patient?_id=${patient}`,
    'Patient?_lastUpdated=gt2000-01-01&_summary=count',
    'Condition?code=http://snomed.info/sct|38341003&onset-date=2020',
    'Observation?_count=1&_total=accurate',
    'Observation?_dedup=merged&_include=Observation:patient',
    'Organization?name=health',
    'Linkage',
  ];
  for (const s of searches)
    await routed(t, `GET ${s}`, async () => {
      const res = await req('GET', s);
      t.equal(res.statusCode, 200, `${s} answered`);
      // The next page too (keyset, or the sorted search's snapshot).
      const next = linkOf(res.json(), 'next');
      if (next) t.equal((await send(app, { method: 'GET', url: next.replace(/^https?:\/\/[^/]+/, ''), headers })).statusCode, 200, `${s}: next page`);
    });
  await routed(t, '$everything', async () => {
    const res = await req('GET', `Patient/${patient}/$everything`);
    t.equal(res.statusCode, 200);
    t.ok(entries(res.json()).length >= 5, 'the patient and their records');
  });
  await routed(t, 'transaction', async () => {
    const res = await req('POST', '', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: 'urn:uuid:0b9b0a5e-1c51-4b41-9c1e-000000000001',
          resource: { resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, subject: { reference: `Patient/${patient}` } },
          request: { method: 'POST', url: 'Encounter' },
        },
        { resource: { resourceType: 'Patient', id: 'chosen-in-bundle' }, request: { method: 'PUT', url: 'Patient/chosen-in-bundle' } },
        {
          resource: { resourceType: 'Practitioner', identifier: [{ system: 'urn:npi', value: '1' }] },
          request: { method: 'POST', url: 'Practitioner', ifNoneExist: 'identifier=urn:npi|1' },
        },
        { request: { method: 'DELETE', url: `Observation/${obs}` } },
      ],
    });
    t.equal(res.statusCode, 200, 'transaction answered');
  });
  await routed(t, 'delete', async () => {
    t.equal((await req('DELETE', 'Patient/chosen-id')).statusCode, 200);
    t.equal((await req('GET', 'Patient/chosen-id')).statusCode, 410);
  });
  await routed(t, 'a de-duplication run', async () => {
    await dedupPerson(app.pg, tenant.id, person.id, DEFAULT_SETTINGS);
  });
});

t.test("the SQL modules' statements of one person's records stay on their shard", async (t) => {
  const statements: [string, Sql][] = [
    ['sync: stored of', syncSql.storedOf(tenant.id, person.id, ['Patient'], ['x'])],
    ['sync: tagged of type', syncSql.taggedOfType(tenant.id, person.id, 'Observation', 'urn:s', 'c')],
    ['sandbox: live count', sandboxSql.liveResourceCount(tenant.id, person.id)],
    ['sandbox: records of type', sandboxSql.recordsOfType(tenant.id, person.id, 'Observation', 10, 0)],
    ['connect: records from', connectSql.recordsFrom(tenant.id, person.id, 'https://ehr.example/fhir')],
    ['dedup: state of records', dedupSql.recordsState(tenant.id, person.id, ['Observation'])],
    ['dedup: records', dedupSql.records(tenant.id, person.id, ['Observation'])],
    ['dedup: state', dedupSql.stateOf(person.id)],
    ['dedup: decisions', dedupSql.decisions(person.id)],
    ['dedup: links', dedupSql.linkRows(tenant.id, person.id, 10)],
    ['dedup: decide', dedupSql.decide(tenant.id, person.id, '1', '2', 'rejected')],
  ];
  for (const [label, s] of statements) t.same(await strayPartitions({ text: s.text, values: s.values }), [], label);
  // And a statement that does not name the person is caught.
  t.same(
    await strayPartitions({
      text: 'SELECT count(*) FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id WHERE r.partition_id = $1',
      values: [tenant.id],
    }),
    ['hfj_res_ver', 'hfj_resource'],
    'a statement without the owner reads other shards, and the check says so',
  );
});

t.test('what was checked', async (t) => {
  t.comment(checked.join('\n'));
  t.comment(`statements that read every shard by design: ${everyShard.join(', ')}`);
  t.ok(everyShard.length >= 2, 'the checks of ids chosen by the client are the only ones that read every shard');
  t.ok(checked.reduce((n, line) => n + Number(line.split(': ').at(-1)), 0) > 50, 'more than 50 statements run again and checked');
});
