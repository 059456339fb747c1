/**
 * The plan of a patient's search, whichever way the reference is written, on a store just loaded
 * (before PostgreSQL has statistics, when it once walked every Observation of the store and probed
 * the index for each: 20-40 ms instead of 2 on 7,454 resources).
 *
 * One patient has 20 Observations among 600 of another. Each written form of
 * `Observation?patient=...&code=...` answers the same ids, and the statement it ran, explained on
 * the same database, reads hfj_resource by primary key only: the ids come from the patient's links;
 * and it checks the code of the patient's token rows in the index (none is read from the table to
 * be thrown away), before statistics and after ANALYZE, when the generic plan takes the res_id index.
 * The statements are observed as the server sends them (the pools' query function is wrapped to
 * record them, and still runs them).
 */
import t from 'tap';
import type pg from 'pg';
import { buildTestApp } from '../helper.ts';
import { FHIR, FHIR_JSON, ORIGIN, send, type Json } from './search-support.ts';

const app = await buildTestApp(t);
const serverVersion = Number((await app.pg.query('SHOW server_version_num')).rows[0].server_version_num);
// No statistics while the test runs: autovacuum could analyze the tables it writes within a minute.
for (const table of ['hfj_resource', 'hfj_res_link', 'hfj_spidx_token', 'hfj_res_ver'])
  await app.pg.query(`ALTER TABLE ${table} SET (autovacuum_enabled = false)`);

const LOINC = 'http://loinc.org';
async function post(resource: Json): Promise<string> {
  const res = await send(app, { method: 'POST', url: `${FHIR}/${resource.resourceType}`, headers: { 'content-type': FHIR_JSON }, payload: resource });
  if (res.statusCode !== 201) throw new Error(`${res.statusCode} ${res.body.slice(0, 200)}`);
  return res.json().id;
}
async function transaction(resources: Json[]): Promise<void> {
  const res = await send(app, {
    method: 'POST',
    url: FHIR,
    headers: { 'content-type': FHIR_JSON },
    payload: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: resources.map((resource) => ({ resource, request: { method: 'POST', url: resource.resourceType } })),
    },
  });
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body.slice(0, 200)}`);
}
const observation = (patient: string, code: string, i: number) => ({
  resourceType: 'Observation',
  status: 'final',
  code: { coding: [{ system: LOINC, code }] },
  subject: { reference: `Patient/${patient}` },
  effectiveDateTime: `2020-01-${String((i % 28) + 1).padStart(2, '0')}`,
  valueQuantity: { value: i, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
});
const ann = await post({ resourceType: 'Patient', name: [{ family: 'Planned' }] });
const other = await post({ resourceType: 'Patient', name: [{ family: 'Other' }] });
await transaction(Array.from({ length: 20 }, (_, i) => observation(ann, i % 2 ? '29463-7' : '8302-2', i)));
for (let k = 0; k < 3; k++) await transaction(Array.from({ length: 200 }, (_, i) => observation(other, '29463-7', i)));
const stats = await app.pg.query("SELECT reltuples FROM pg_class WHERE relname = 'hfj_resource'");
t.ok(Number(stats.rows[0].reltuples) <= 0, `hfj_resource has no statistics yet (reltuples ${stats.rows[0].reltuples})`);

// Every statement the two pools send, with its values.
const sent: { text: string; values: unknown[] }[] = [];
for (const pool of [app.pg, app.pgSearch]) {
  const query = pool.query.bind(pool) as (...a: unknown[]) => Promise<pg.QueryResult>;
  (pool as unknown as { query: unknown }).query = (...a: unknown[]) => {
    const q = a[0] as { text?: string; values?: unknown[] } | string;
    if (typeof q === 'object' && q.text) sent.push({ text: q.text, values: q.values ?? [] });
    return query(...a);
  };
}

/** The index rows of hfj_spidx_token a plan read from the table and threw away (a check not made in the index). */
function tokenRowsFiltered(plan: Json): number {
  const own = plan['Relation Name'] === 'hfj_spidx_token' ? Number(plan['Rows Removed by Filter'] ?? 0) * Number(plan['Actual Loops'] ?? 1) : 0;
  return own + ((plan.Plans ?? []) as Json[]).reduce((n, child) => n + tokenRowsFiltered(child), 0);
}

/** The relations hfj_resource is read through in a plan: index names, or 'Seq Scan'. */
function resourceAccess(plan: Json, out: string[] = []): string[] {
  if (plan['Relation Name'] === 'hfj_resource') out.push(plan['Index Name'] ?? plan['Node Type']);
  for (const child of plan.Plans ?? []) resourceAccess(child, out);
  return out;
}

const FORMS: [string, string][] = [
  ['patient=id', `Observation?patient=${ann}`],
  ['patient=Patient/id', `Observation?patient=Patient/${ann}`],
  ['subject=Patient/id', `Observation?subject=Patient/${ann}`],
  ['subject:Patient=id', `Observation?subject:Patient=${ann}`],
  ['an absolute URL', `Observation?patient=${encodeURIComponent(`${ORIGIN}${FHIR}/Patient/${ann}`)}`],
  ['the compartment', `Patient/${ann}/Observation?`],
];

let expected: string[] | undefined;
for (const [phase, name, path] of [
  ...FORMS.map(([name, path]) => ['before statistics', name, path]),
  // With statistics, the generic plan of the unowned search goes by the patient's res_ids.
  ['after ANALYZE', ...FORMS[0]],
]) {
  t.test(`${phase}, ${name}: the patient's own, read by primary key`, async (t) => {
    if (phase === 'after ANALYZE') await app.pg.query('ANALYZE hfj_resource, hfj_res_link, hfj_spidx_token, hfj_res_ver');
    sent.length = 0;
    const res = await send(app, {
      method: 'GET',
      url: `${FHIR}/${path}${path.endsWith('?') ? '' : '&'}code=${encodeURIComponent(`${LOINC}|29463-7`)}`,
    });
    t.equal(res.statusCode, 200, res.statusCode === 200 ? 'answered' : res.body.slice(0, 300));
    const ids = ((res.json().entry ?? []) as Json[]).map((e) => e.resource.id).sort();
    t.equal(ids.length, 10, "ann's 10 Observations of that code");
    expected ??= ids;
    t.same(ids, expected, 'the same as every other form');
    const statement = sent.find((s) => s.text.includes('hfj_res_link') && s.text.includes('hfj_resource r'));
    if (!statement) return t.fail(`no search statement was seen (${sent.length} statements)`);
    // On the pool the search ran on (generic plans: planned once per shape).
    const client = await app.pg.connect();
    try {
      const { rows } = await client.query({ text: `EXPLAIN (ANALYZE, FORMAT JSON) ${statement.text}`, values: statement.values });
      const plan = rows[0]['QUERY PLAN'][0].Plan;
      const access = resourceAccess(plan);
      t.ok(access.length > 0, 'the plan reads hfj_resource');
      t.same([...new Set(access)], ['hfj_resource_pkey'], `hfj_resource only by primary key (${access.join(', ')})`);
      // The code is checked in the index (migration 0024): before, each of ann's token rows (her
      // resources' status, category, code...) was read from the table to compare its hash.
      // PostgreSQL before 17 costs a second array condition (ANY) in one btree index poorly (17
      // reworked arrays in index conditions): before statistics, 15 reads the code's rows by the
      // hash index and drops the other patients' (600 here). Asserted where it holds.
      if (serverVersion >= 170000 || phase === 'after ANALYZE')
        t.equal(tokenRowsFiltered(plan), 0, 'no token row read from the table only to be discarded');
      else t.comment(`PostgreSQL ${serverVersion}: ${tokenRowsFiltered(plan)} token rows read and dropped before statistics`);
    } finally {
      client.release();
    }
  });
}
