/**
 * Migration 0030 (the distribution key) on a store written before it.
 *
 * Records are written through the API as a store holds them: a user's (with tags, versions, index
 * rows and links) and the app's own. The store is then taken back to the schema before 0030
 * (owner_id NULL for the app's own records, no owner in hfj_res_ver and the tag tables, keys
 * without it) and 0030 runs on it as at an upgrade. Afterwards every row carries its owner's key,
 * the keys and foreign keys are the new ones, and the API answers exactly as before: the same
 * reads, versions, searches and tags, for the user and for the app.
 */
import t from 'tap';
import { buildApp } from '../../src/app.ts';
import { INDEX_TABLES, ownerKey } from '../../src/storage/distribution.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { FHIR, FHIR_JSON, LOINC, type Json, send } from './search-support.ts';

const url = await testDatabase(t);
const config = testConfig(url, { fhirAuth: 'required' });
let app = await buildApp(config, { logger: false });
await app.ready();

const { app: tenant, clientSecret } = await app.auth.createApp({ name: 'Before 0030' });
const user = (await app.auth.createUser(tenant.id, 'upgraded'))!;
const token = (await app.auth.exchangeCode(tenant, await app.auth.newCode(tenant.id, user.id))).access_token;
const asUser = { authorization: `Bearer ${token}` };
const asApp = { client_id: tenant.clientId, client_secret: clientSecret, 'x-oneup-user-id': 'client' };

const write = async (headers: Record<string, string>, resource: Json, method: 'POST' | 'PUT' = 'POST') => {
  const res = await send(app, {
    method,
    url: method === 'POST' ? `${FHIR}/${resource.resourceType}` : `${FHIR}/${resource.resourceType}/${resource.id}`,
    headers: { ...headers, 'content-type': FHIR_JSON },
    payload: resource,
  });
  if (res.statusCode >= 300) throw new Error(`${resource.resourceType}: ${res.statusCode} ${res.body.slice(0, 300)}`);
  return res.json().id as string;
};
const patient = await write(asUser, { resourceType: 'Patient', name: [{ family: 'Upgraded' }], meta: { tag: [{ system: 'urn:t', code: 'mine' }] } });
const org = await write(asApp, { resourceType: 'Organization', name: 'The app itself', meta: { tag: [{ system: 'urn:t', code: 'app' }] } });
for (let i = 0; i < 3; i++)
  await write(asUser, {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: LOINC, code: '8867-4' }] },
    subject: { reference: `Patient/${patient}` },
    performer: [{ reference: `Organization/${org}` }],
    valueQuantity: { value: 70 + i, system: 'http://unitsofmeasure.org', code: '/min' },
  });
await write(
  asUser,
  { resourceType: 'Patient', id: patient, name: [{ family: 'Upgraded', given: ['Twice'] }], meta: { tag: [{ system: 'urn:t', code: 'mine' }] } },
  'PUT',
);

const QUERIES: [string, Record<string, string>][] = [
  [`Patient/${patient}`, asUser],
  [`Patient/${patient}/_history`, asUser],
  [`Observation?code=${LOINC}|8867-4&_include=Observation:performer&_include=Observation:patient`, asUser],
  ['Patient?_tag=urn:t|mine', asUser],
  [`Observation?patient=${patient}&value-quantity=gt70`, asUser],
  [`Organization/${org}`, asApp],
  ['Organization?_tag=urn:t|app', asApp],
  ['Observation?_summary=count', asApp],
];
/** What the API answers, without what changes from one request to the next. */
async function answers(): Promise<string[]> {
  const out: string[] = [];
  for (const [q, headers] of QUERIES) {
    const res = await send(app, { method: 'GET', url: `${FHIR}/${q}`, headers });
    const body = res.json();
    delete body.id;
    delete body.meta?.lastUpdated;
    delete body.timestamp;
    out.push(`${q}: ${res.statusCode} ${JSON.stringify(body)}`);
  }
  return out;
}
const before = await answers();

// Back to the schema before 0030, the rows as they were then.
const TABLES = INDEX_TABLES;
await app.pg.query(`
  ALTER TABLE hfj_res_ver DROP CONSTRAINT hfj_res_ver_res_id_fkey;
  ALTER TABLE hfj_history_tag DROP CONSTRAINT hfj_history_tag_res_ver_pid_fkey;
  ALTER TABLE hfj_resource DROP CONSTRAINT hfj_resource_pkey, ADD PRIMARY KEY (res_id);
  ALTER TABLE hfj_res_ver DROP CONSTRAINT hfj_res_ver_pkey, ADD PRIMARY KEY (pid);
  ALTER TABLE hfj_res_tag DROP CONSTRAINT hfj_res_tag_pkey, ADD PRIMARY KEY (pid);
  ALTER TABLE hfj_history_tag DROP CONSTRAINT hfj_history_tag_pkey, ADD PRIMARY KEY (pid);
  ${TABLES.map((x) => `ALTER TABLE ${x} DROP CONSTRAINT ${x}_pkey, ADD PRIMARY KEY (sp_id), ALTER COLUMN owner_id DROP NOT NULL;`).join('\n')}
  ALTER TABLE hfj_res_link DROP CONSTRAINT hfj_res_link_pkey, ADD PRIMARY KEY (pid), ALTER COLUMN owner_id DROP NOT NULL;
  ALTER TABLE hfj_res_param_present DROP CONSTRAINT hfj_res_param_present_pkey, ADD PRIMARY KEY (pid), ALTER COLUMN owner_id DROP NOT NULL;
  ALTER TABLE hfj_resource ALTER COLUMN owner_id DROP NOT NULL;
  ${['hfj_resource', ...TABLES, 'hfj_res_link', 'hfj_res_param_present'].map((x) => `UPDATE ${x} SET owner_id = NULL WHERE owner_id < 0;`).join('\n')}
  ALTER TABLE hfj_res_ver DROP COLUMN owner_id;
  ALTER TABLE hfj_res_tag DROP COLUMN owner_id;
  ALTER TABLE hfj_history_tag DROP COLUMN owner_id;
  ALTER TABLE hfj_res_ver ADD CONSTRAINT hfj_res_ver_res_id_fkey FOREIGN KEY (res_id) REFERENCES hfj_resource (res_id);
  ALTER TABLE hfj_history_tag ADD CONSTRAINT hfj_history_tag_res_ver_pid_fkey FOREIGN KEY (res_ver_pid) REFERENCES hfj_res_ver (pid);
  DROP INDEX idx_res_type_fhir_id; CREATE UNIQUE INDEX idx_res_type_fhir_id ON hfj_resource (partition_id, res_type, fhir_id);
  CREATE UNIQUE INDEX idx_resver_id_ver ON hfj_res_ver (res_id, res_ver);
  CREATE UNIQUE INDEX idx_restag_tagid ON hfj_res_tag (res_id, tag_id);
  CREATE UNIQUE INDEX idx_reshisttag_tagid ON hfj_history_tag (res_ver_pid, tag_id);
  DROP INDEX idx_res_owner; CREATE INDEX idx_res_owner ON hfj_resource (partition_id, owner_id, res_type) WHERE owner_id IS NOT NULL;
  DELETE FROM trb_migration WHERE version = 30;
`);
const nulls = await app.pg.query(`SELECT count(*)::int AS n FROM hfj_resource WHERE owner_id IS NULL`);
await app.close();

// The upgrade: the next start applies 0030.
app = await buildApp(config, { logger: false });
await app.ready();
t.teardown(() => app.close());

t.test('after 0030: every row carries its owner key, and the keys are the new ones', async (t) => {
  t.equal(nulls.rows[0].n, 1, "before: the app's Organization had no owner");
  const appKey = ownerKey(tenant.id, null);
  for (const table of ['hfj_resource', 'hfj_res_ver', 'hfj_res_tag', 'hfj_history_tag', 'hfj_spidx_token', 'hfj_spidx_quantity', 'hfj_res_link']) {
    const { rows } = await app.pg.query(`SELECT DISTINCT owner_id::text AS o FROM ${table} WHERE partition_id = $1 ORDER BY 1`, [tenant.id]);
    const keys = rows.map((r) => r.o);
    t.ok(keys.every((k) => k === user.id || k === appKey) && keys.includes(user.id), `${table}: the user's key and the app's (${keys.join(', ')})`);
  }
  const org = await app.pg.query(`SELECT owner_id::text AS o FROM hfj_resource WHERE res_type = 'Organization' AND partition_id = $1`, [tenant.id]);
  t.equal(org.rows[0].o, appKey, "the app's Organization has the app's key");
  const pk = await app.pg.query(`SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conname = 'hfj_res_ver_res_id_fkey'`);
  t.match(
    pk.rows[0].d,
    /FOREIGN KEY \(res_id, owner_id\) REFERENCES hfj_resource\(res_id, owner_id\)/,
    'the versions refer to their resource by (res_id, owner_id)',
  );
});

t.test('after 0030: the API answers as before', async (t) => {
  const after = await answers();
  for (let i = 0; i < QUERIES.length; i++) t.equal(after[i], before[i], QUERIES[i][0]);
  // And writes go on: an update of a record written before.
  await write(asUser, { resourceType: 'Patient', id: patient, name: [{ family: 'Upgraded', given: ['Thrice'] }] }, 'PUT');
  const res = await send(app, { method: 'GET', url: `${FHIR}/Patient/${patient}/_history`, headers: asUser });
  t.equal(res.json().total, 3, 'a third version');
});
