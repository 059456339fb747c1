/**
 * The directory as FHIR resources: an Endpoint per system and an Organization per distinct
 * organization, in a partition every app reads and none writes. Searched, read, included and
 * chained through the FHIR API with a user's token or an app's credentials; valid R4; following the
 * tables on re-import (changed, removed, unchanged), after an interrupted run, and after a probe.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { buildTestApp } from '../helper.ts';
import { FHIR, FHIR_JSON, type Json, send } from './search-support.ts';
import { importDirectory, systemId, type ImportSource } from '../../src/directory/importer.ts';
import { syncFhirView, HEALTH_SYSTEM_ID } from '../../src/directory/fhir-view.ts';
import { probeSystems } from '../../src/directory/probe.ts';
import { DIRECTORY_SCOPE } from '../../src/fhir/ports.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
const SOARIAN = path.resolve(REPO, '..', 'shared', 'directory', 'oracle-health', 'soarian_patient_r4_endpoints.json');

const app: FastifyInstance = await buildTestApp(t, { fhirAuth: 'required' });
const NPI = 'http://hl7.org/fhir/sid/us-npi';
const MN_R4 = 'https://mn.example/fhir/r4';
const MN_DSTU2 = 'https://mn.example/fhir/dstu2';
const TX = 'https://tx.example/api/FHIR/R4';
const csv = (rows: string[]): ImportSource => ({ name: 'north.csv', vendor: 'Acme EHR', content: ['url,name,npi,zip', ...rows].join('\n') });
const FIRST = [
  `${MN_R4},North Star Clinic,1111111111,55401`,
  `${MN_R4},North Star Hospital,2222222222,55902`,
  `${MN_DSTU2}/,North Star Clinic,1111111111,55401`,
  `${TX},Lone Star Health,,75201`,
];
const view = () => syncFhirView({ pool: app.pg, repo: app.fhir.repo, indexer: app.fhir.indexer });

await importDirectory(app.pg, [csv(FIRST), { name: 'soarian.json', content: fs.readFileSync(SOARIAN, 'utf8'), vendor: 'Oracle Health' }]);
const first = await view();

// Two apps; a user of app A (token) and app B acting for all its users (client credentials).
const { app: appA } = await app.auth.createApp({ name: 'A' });
const { app: appB, clientSecret: secretB } = await app.auth.createApp({ name: 'B' });
const userA = (await app.auth.createUser(appA.id, 'a1'))!;
const tokenA = (await app.auth.exchangeCode(appA, await app.auth.newCode(appA.id, userA.id))).access_token;
const asA = { authorization: `Bearer ${tokenA}` };
const asB = { client_id: appB.clientId, client_secret: secretB, 'x-oneup-user-id': 'client' };

async function get(target: string, headers: Record<string, string>): Promise<{ status: number; body: Json }> {
  const res = await send(app, { method: 'GET', url: `${FHIR}/${target}`, headers });
  return { status: res.statusCode, body: res.json() };
}
const resources = (bundle: Json): Json[] => (bundle.entry ?? []).map((e: Json) => e.resource);
const ids = (bundle: Json, type?: string): string[] =>
  resources(bundle)
    .filter((r) => !type || r.resourceType === type)
    .map((r) => `${r.resourceType}/${r.id}`)
    .sort();
const idOf = (url: string) => systemId(url.replace(/\/+$/, '').toLowerCase());
const orgRows = async (npi: string) =>
  (await app.pg.query<{ org_id: string }>('SELECT DISTINCT org_id FROM trb_system_org WHERE npi = $1', [npi])).rows.map((r) => r.org_id);

t.test('an Endpoint per system and an Organization per distinct organization, valid R4', async (t) => {
  const systems = Number((await app.pg.query('SELECT count(*) AS n FROM trb_system')).rows[0].n);
  const orgs = Number((await app.pg.query('SELECT count(DISTINCT org_id) AS n FROM trb_system_org')).rows[0].n);
  t.same(first, { systems, written: systems + orgs, unchanged: 0 });
  const { rows } = await app.pg.query<{ res_type: string; n: string }>(
    'SELECT res_type, count(*) AS n FROM hfj_resource WHERE partition_id = $1 GROUP BY 1 ORDER BY 1',
    [DIRECTORY_SCOPE.partitionId],
  );
  t.same(
    rows.map((r) => [r.res_type, Number(r.n)]),
    [
      ['Endpoint', systems],
      ['Organization', orgs],
    ],
  );
  const all = await app.pg.query<{ json: string }>(
    'SELECT v.res_text_vc AS json FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver WHERE r.partition_id = $1',
    [DIRECTORY_SCOPE.partitionId],
  );
  const problems = all.rows.flatMap(({ json }) => app.fhir.validator.validate(JSON.parse(json)).filter((i) => i.severity === 'error'));
  t.same(problems, [], 'every Endpoint and Organization validates against the R4 definitions');
  t.equal((await view()).systems, 0, 'nothing left to do');
});

t.test('Endpoint?address= finds a system; it names its Organization, vendor and FHIR version', async (t) => {
  const { status, body } = await get(`Endpoint?address=${encodeURIComponent(MN_R4)}`, asA);
  t.equal(status, 200);
  t.equal(body.total ?? body.entry?.length, 1);
  const ep = resources(body)[0];
  t.match(ep, {
    id: idOf(MN_R4),
    status: 'active',
    address: MN_R4,
    name: 'North Star Clinic',
    identifier: [{ system: HEALTH_SYSTEM_ID, value: idOf(MN_R4) }],
    connectionType: { code: 'hl7-fhir-rest' },
    managingOrganization: { reference: `Organization/${(await orgRows('1111111111'))[0]}` },
  });
  t.same(
    ep.extension.map((e: Json) => e.valueCode ?? e.valueString),
    ['R4', 'Acme EHR'],
  );
  t.same(
    ids((await get(`Endpoint?identifier=${HEALTH_SYSTEM_ID}|${idOf(TX)}`, asB)).body),
    [`Endpoint/${idOf(TX)}`],
    'by directory id, for app B too',
  );
});

t.test('Organization?name=&address-state= (the state from the zip when the list has none)', async (t) => {
  const mn = await get('Organization?name=north%20star&address-state=MN', asA);
  t.equal(mn.status, 200);
  t.same(
    resources(mn.body)
      .map((o) => o.name)
      .sort(),
    ['North Star Clinic', 'North Star Hospital'],
  );
  const clinic = resources(mn.body).find((o) => o.name === 'North Star Clinic')!;
  t.same(clinic.identifier, [{ system: NPI, value: '1111111111' }]);
  t.same(clinic.address, [{ postalCode: '55401', state: 'MN', country: 'US' }]);
  t.same(
    clinic.endpoint.map((e: Json) => e.reference).sort(),
    [`Endpoint/${idOf(MN_DSTU2)}`, `Endpoint/${idOf(MN_R4)}`].sort(),
    'one Organization, both its endpoints',
  );
  t.same(ids((await get('Organization?name=north%20star&address-state=TX', asB)).body), []);
  const soarian = await get('Organization?address-state=PA&_count=100', asB);
  t.ok(
    resources(soarian.body).length > 0 && resources(soarian.body).every((o) => o.address.some((a: Json) => a.state === 'PA')),
    'HTI-1 addresses come along',
  );
});

t.test('reads, history, _include, _revinclude and chains reach the directory', async (t) => {
  const epId = idOf(MN_R4);
  const [clinicId] = await orgRows('1111111111');
  t.equal((await get(`Endpoint/${epId}`, asB)).body.address, MN_R4);
  t.equal((await get(`Endpoint/${epId}/_history/1`, asA)).status, 200);
  t.equal((await get(`Endpoint/${epId}/_history`, asA)).body.total, 1);
  t.same(
    ids((await get(`Organization?_id=${clinicId}&_include=Organization:endpoint`, asA)).body),
    [`Endpoint/${idOf(MN_DSTU2)}`, `Endpoint/${epId}`, `Organization/${clinicId}`].sort(),
  );
  t.same(
    ids((await get(`Organization?_id=${clinicId}&_revinclude=Endpoint:organization`, asA)).body, 'Endpoint'),
    [`Endpoint/${idOf(MN_DSTU2)}`, `Endpoint/${epId}`].sort(),
  );
  t.same(ids((await get('Endpoint?organization.name=lone%20star', asB)).body), [`Endpoint/${idOf(TX)}`]);
  t.same(ids((await get(`Organization?endpoint.address=${encodeURIComponent(TX)}`, asA)).body).length, 1);
  t.equal(
    (await send(app, { method: 'GET', url: `${FHIR}/Endpoint?address=${encodeURIComponent(MN_R4)}` })).statusCode,
    401,
    'not without credentials',
  );
  // A search of every type is the caller's own data only.
  t.same(ids((await get('?_type=Patient', asA)).body), []);
  t.equal((await get('?_lastUpdated=gt2000-01-01', asA)).body.total ?? 0, 0, 'a search of every type leaves the directory out');
});

t.test("an app's own Organizations stay its own; the directory cannot be written through the API", async (t) => {
  const post = (body: Json, headers: Record<string, string>) =>
    send(app, { method: 'POST', url: `${FHIR}/Organization`, headers: { ...headers, 'content-type': FHIR_JSON }, payload: body });
  const own = await post({ resourceType: 'Organization', name: 'North Star Private Practice', address: [{ state: 'MN' }] }, asA);
  t.equal(own.statusCode, 201);
  t.equal(resources((await get('Organization?name=north%20star&address-state=MN', asA)).body).length, 3, 'A sees its own and the directory');
  t.equal(resources((await get('Organization?name=north%20star&address-state=MN', asB)).body).length, 2, "B sees the directory, not A's");
  // A conditional create matches the app's own resources, not the directory's.
  const cond = await send(app, {
    method: 'POST',
    url: `${FHIR}/Organization`,
    headers: { ...asA, 'content-type': FHIR_JSON, 'if-none-exist': `identifier=${NPI}|1111111111` },
    payload: { resourceType: 'Organization', name: 'My copy', identifier: [{ system: NPI, value: '1111111111' }] },
  });
  t.equal(cond.statusCode, 201, 'created in the app, though the directory has that NPI');

  const epId = idOf(TX);
  const before = (await get(`Endpoint/${epId}`, asB)).body;
  const del = await send(app, { method: 'DELETE', url: `${FHIR}/Endpoint/${epId}`, headers: asA });
  t.ok(del.statusCode < 500, `DELETE answers ${del.statusCode}`);
  const put = await send(app, {
    method: 'PUT',
    url: `${FHIR}/Endpoint/${epId}`,
    headers: { ...asA, 'content-type': FHIR_JSON },
    payload: { ...before, meta: undefined, name: 'Hijacked' },
  });
  t.ok(put.statusCode < 500, `PUT answers ${put.statusCode}`);
  t.same((await get(`Endpoint/${epId}`, asB)).body, before, 'the directory Endpoint is as it was, for everyone else');
  const { rows } = await app.pg.query('SELECT res_ver FROM hfj_resource WHERE partition_id = $1 AND fhir_id = $2', [
    DIRECTORY_SCOPE.partitionId,
    epId,
  ]);
  t.same(
    rows.map((r) => Number(r.res_ver)),
    [1],
  );
});

t.test('a re-import: changed systems get a new version, removed organizations are deleted, the rest stay', async (t) => {
  const [hospital] = await orgRows('2222222222');
  const again = csv([FIRST[0], FIRST[2], `${TX},Lone Star Health System,,75201`]);
  const summary = await importDirectory(app.pg, [again]);
  t.same({ updated: summary.updated, unchanged: summary.unchanged }, { updated: 2, unchanged: 1 });
  const changed = await view();
  t.equal(changed.systems, 2);
  t.equal((await get(`Organization/${hospital}`, asA)).status, 410, 'the organization no list names any more is deleted');
  const tx = (await get(`Endpoint/${idOf(TX)}`, asB)).body;
  t.same([tx.name, tx.meta.versionId], ['Lone Star Health System', '2']);
  t.equal((await get(`Endpoint/${idOf(MN_DSTU2)}`, asB)).body.meta.versionId, '1', 'an unchanged system makes no version');
  const mnR4 = (await get(`Endpoint/${idOf(MN_R4)}`, asB)).body;
  t.equal(mnR4.managingOrganization.reference, `Organization/${(await orgRows('1111111111'))[0]}`);

  // An interrupted run: whatever the view has not caught up with is written on the next run.
  await app.pg.query('UPDATE trb_system SET fhir_sha256 = NULL WHERE id = $1', [idOf(MN_DSTU2)]);
  const resumed = await view();
  t.same(resumed, { systems: 1, written: 0, unchanged: 2 }, 'the Endpoint and its Organization, rewritten as they were');
});

t.test("a probe's verdict reaches Endpoint.status", async (t) => {
  const id = idOf(TX);
  await app.pg.query("UPDATE trb_system SET resource_url = 'http://127.0.0.1:1/fhir' WHERE id = $1", [id]);
  t.same(await probeSystems(app.pg, { concurrency: 1, timeoutMs: 2000, attempts: 1, backoffMs: 1 }, [id]), {
    connection_working: 0,
    no_smart: 0,
    unreachable: 1,
  });
  t.same(await view(), { systems: 1, written: 1, unchanged: 1 });
  // (B: app A stored an Endpoint of its own under this id above, and A reads its own first.)
  t.equal((await get(`Endpoint/${id}`, asB)).body.status, 'error');
});
