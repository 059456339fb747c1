/**
 * Index rows carry their resource's owner, and a user's search reads only the user's own rows.
 *
 * Two users of one app write Observations of the same code and subjects of their own. The index
 * and link rows of each carry its writer as owner_id; an update with the app's credentials, a
 * $reindex batch and a transaction keep it; the app's own resources carry the app's key (the
 * distribution key of records no person owns, src/storage/distribution.ts). Then a row planted
 * in the index under another owner, pointing at a user's resource, is not read by that user's
 * search (the search asks the index for the user's rows only), while the app's search over all
 * its users still reads it: proof that the owner filter is in the index lookup, not only on the
 * resource.
 */
import t from 'tap';
import { reindexBatch } from '../../src/search/reindex.ts';
import { ownerKey } from '../../src/storage/distribution.ts';
import { buildTestApp } from '../helper.ts';
import { FHIR, FHIR_JSON, send, type Json } from './search-support.ts';

const app = await buildTestApp(t, { fhirAuth: 'required' });
const { app: tenant, clientSecret } = await app.auth.createApp({ name: 'Owners' });
const asApp = { client_id: tenant.clientId, client_secret: clientSecret, 'x-oneup-user-id': 'client' };

async function person(name: string) {
  const user = (await app.auth.createUser(tenant.id, name))!;
  const tokens = await app.auth.exchangeCode(tenant, await app.auth.newCode(tenant.id, user.id));
  return { id: user.id, headers: { authorization: `Bearer ${tokens.access_token}` } };
}
const [ann, bob] = [await person('ann'), await person('bob')];

async function write(headers: Record<string, string>, resource: Json, method = 'POST'): Promise<string> {
  const target = method === 'POST' ? `${FHIR}/${resource.resourceType}` : `${FHIR}/${resource.resourceType}/${resource.id}`;
  const res = await send(app, { method: method as 'POST', url: target, headers: { ...headers, 'content-type': FHIR_JSON }, payload: resource });
  if (res.statusCode !== 201 && res.statusCode !== 200) throw new Error(`${method} ${target}: ${res.statusCode} ${res.body.slice(0, 300)}`);
  return res.json().id;
}
const CODE = { coding: [{ system: 'http://loinc.org', code: '8302-2' }] };
const obs = (patient: string, value: number) => ({
  resourceType: 'Observation',
  status: 'final',
  code: CODE,
  subject: { reference: `Patient/${patient}` },
  valueQuantity: { value, unit: 'cm' },
  effectiveDateTime: '2024-01-02',
});

const annPatient = await write(ann.headers, { resourceType: 'Patient', name: [{ family: 'Owner' }] });
const annObs = await write(ann.headers, obs(annPatient, 170));
const bobPatient = await write(bob.headers, { resourceType: 'Patient', name: [{ family: 'Owner' }] });
const bobObs = await write(bob.headers, obs(bobPatient, 180));
const appOrg = await write(asApp, { resourceType: 'Organization', name: 'The app itself' });

const resId = async (type: string, id: string) =>
  (await app.pg.query('SELECT res_id FROM hfj_resource WHERE res_type = $1 AND fhir_id = $2', [type, id])).rows[0].res_id as string;
/** The distinct owners of a resource's rows in each index table (null: none). */
async function owners(type: string, id: string): Promise<Record<string, (string | null)[]>> {
  const r = await resId(type, id);
  const out: Record<string, (string | null)[]> = {};
  for (const table of ['hfj_spidx_token', 'hfj_spidx_string', 'hfj_spidx_date', 'hfj_spidx_quantity', 'hfj_res_param_present']) {
    const { rows } = await app.pg.query(`SELECT DISTINCT owner_id FROM ${table} WHERE res_id = $1`, [r]);
    if (rows.length) out[table] = rows.map((x) => x.owner_id);
  }
  const links = await app.pg.query('SELECT DISTINCT owner_id FROM hfj_res_link WHERE src_resource_id = $1', [r]);
  if (links.rows.length) out.hfj_res_link = links.rows.map((x) => x.owner_id);
  return out;
}
const allOf = (o: Record<string, (string | null)[]>, owner: string | null) =>
  Object.keys(o).length > 0 && Object.values(o).every((v) => v.length === 1 && v[0] === owner);

t.test("each resource's index and link rows carry its owner; the app's own carry the app's key", async (t) => {
  t.ok(allOf(await owners('Observation', annObs), ann.id), `ann's Observation: ${JSON.stringify(await owners('Observation', annObs))}`);
  t.ok(allOf(await owners('Observation', bobObs), bob.id), "bob's Observation");
  t.ok(allOf(await owners('Patient', annPatient), ann.id), "ann's Patient");
  t.ok(allOf(await owners('Organization', appOrg), ownerKey(tenant.id, null)), "the app's Organization: the key of the app's own records");
});

t.test('an update with the app credentials, a transaction and $reindex keep the owner', async (t) => {
  await write(asApp, { ...obs(annPatient, 171), id: annObs }, 'PUT');
  t.ok(allOf(await owners('Observation', annObs), ann.id), 'after the app updated it');
  const tx = await send(app, {
    method: 'POST',
    url: FHIR,
    headers: { ...ann.headers, 'content-type': FHIR_JSON },
    payload: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: { ...obs(annPatient, 172), id: annObs }, request: { method: 'PUT', url: `Observation/${annObs}` } }],
    },
  });
  t.equal(tx.statusCode, 200, tx.statusCode === 200 ? 'the transaction' : tx.body.slice(0, 300));
  t.ok(allOf(await owners('Observation', annObs), ann.id), 'after a transaction');
  for (let after = '0'; ;) {
    const step = await reindexBatch(app.pg, app.fhir.indexer, { partitionId: tenant.id }, after);
    if (!step) break;
    after = step.after;
  }
  t.ok(allOf(await owners('Observation', annObs), ann.id), 'after $reindex');
  t.ok(allOf(await owners('Organization', appOrg), ownerKey(tenant.id, null)), "and the app's Organization still the app's key");
});

t.test("a row of another owner pointing at a user's resource is not read by the user's search, and is by the app's", async (t) => {
  const r = await resId('Observation', annObs);
  const count = async (headers: Record<string, string>, query: string) => {
    const res = await send(app, { method: 'GET', url: `${FHIR}/${query}`, headers });
    if (res.statusCode !== 200) t.fail(`${query}: ${res.statusCode} ${res.body.slice(0, 300)}`);
    return ((res.json().entry ?? []) as Json[]).filter((e) => e.resource.id === annObs).length;
  };
  // ann's Observation gets a second code only through a row owned by bob (as no write would make it).
  await app.pg.query(
    `INSERT INTO hfj_spidx_token (partition_id, res_id, res_type, sp_name, hash_identity, sp_system, sp_value, hash_sys, hash_sys_and_value, hash_value, owner_id)
     SELECT partition_id, res_id, res_type, sp_name, hash_identity, sp_system, sp_value, hash_sys, hash_sys_and_value, hash_value, $2
     FROM hfj_spidx_token WHERE res_id = $1 AND sp_name = 'code' AND sp_value = '8302-2' LIMIT 1`,
    [r, bob.id],
  );
  await app.pg.query(`DELETE FROM hfj_spidx_token WHERE res_id = $1 AND sp_name = 'code' AND sp_value = '8302-2' AND owner_id = $2`, [r, ann.id]);
  const code = 'Observation?code=http://loinc.org|8302-2';
  t.equal(await count(bob.headers, code), 0, 'bob does not get her Observation (the resource is still hers)');
  t.equal(await count(ann.headers, code), 0, "ann's search does not read bob's row (so it does not find her Observation through it)");
  t.equal(await count(asApp, code), 1, "the app's search over all its users reads it");
  t.equal(await count(ann.headers, `Observation?patient=${annPatient}&code=http://loinc.org|8302-2`), 0, 'nor does her search by patient and code');
  // Put it back as it was.
  await app.pg.query('UPDATE hfj_spidx_token SET owner_id = $2 WHERE res_id = $1 AND owner_id = $3', [r, ann.id, bob.id]);
  t.equal(await count(ann.headers, code), 1, 'her row again: found');
});
