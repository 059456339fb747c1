/**
 * De-duplication as a person meets it: the sandboxes' shared person connects to two sandbox
 * systems through the real flow, the workers sync both, and after the syncs their duplicates are
 * linked (their Patient at each system, the hypertension, the penicillin allergy and the 2024 flu
 * shot both systems record), nothing else of the two records, and the records themselves untouched;
 * a run with nothing new answers from one look; a rejected link is never made again; a record gone
 * takes its link with it.
 */
import t from 'tap';
import { buildApp } from '../../src/app.ts';
import { dedupPerson } from '../../src/dedup/run.ts';
import { generateSystem } from '../../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES } from '../../src/sandbox/systems.ts';
import { testConfig, testDatabase, waitFor } from '../helper.ts';
import { freePort } from '../pg.ts';
import { get, signIn } from './connect-support.ts';
import type { Json } from './search-support.ts';

const DEFS = DEFAULT_SANDBOXES.slice(0, 2).map((d) => ({ ...d, patients: 1 }));
const port = await freePort();
const BASE = `http://127.0.0.1:${port}`;
const app = await buildApp(
  testConfig(await testDatabase(t), { baseUrl: BASE, sandboxes: true, sandboxSystems: DEFS, fhirAuth: 'required', syncWorkers: true }),
  { logger: false },
);
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());
await app.sandboxesLoaded;
const { app: demo } = await app.auth.createApp({ name: 'Dedup', redirectUris: ['https://app.example/cb'] });
const user = (await app.auth.createUser(demo.id, 'shared-person'))!;
const { access_token: token } = await app.auth.exchangeCode(demo, await app.auth.newCode(demo.id, user.id));
const headers = { authorization: `Bearer ${token}` };

interface LinkRow {
  res_type: string;
  a_res_id: string;
  b_res_id: string;
  rule: string;
  score: number;
  status: string;
  a: string;
  b: string;
}
const links = async () =>
  (
    await app.pg.query<LinkRow>(
      `SELECT l.*, ra.res_type || '/' || ra.fhir_id AS a, rb.res_type || '/' || rb.fhir_id AS b FROM trb_dedup_link l
        JOIN hfj_resource ra ON ra.res_id = l.a_res_id JOIN hfj_resource rb ON rb.res_id = l.b_res_id
        WHERE l.owner_id = $1 ORDER BY l.res_type, l.a_res_id`,
      [user.id],
    )
  ).rows;
const read = async (path: string) => (await fetch(`${BASE}/fhir/r4/${path}`, { headers })).json();

t.test('the shared person at two systems: after the syncs, their duplicates are linked, nothing else', async (t) => {
  for (const def of DEFS) {
    const shared = generateSystem({
      seed: def.seed,
      patients: def.patients,
      idPrefix: def.idPrefix,
      systemName: def.title,
      years: def.years,
      vendor: def.generate?.vendor,
    }).patients.find((p) => p.personKey === 'shared')!;
    const callback = await signIn(
      t,
      BASE,
      `${BASE}/connect/system/clinical/${def.directoryId}?client_id=${demo.clientId}&access_token=${token}`,
      shared.username,
      shared.password,
    );
    await get(callback.toString());
  }
  const synced = await waitFor(async () => {
    const { rows } = await app.pg.query(
      `SELECT count(*)::int AS n FROM trb_sync_run r JOIN trb_connection c ON c.id = r.connection_id WHERE c.user_id = $1 AND r.status = 'succeeded'`,
      [user.id],
    );
    return rows[0].n >= 2;
  });
  t.ok(synced, 'both first syncs ran');
  const found = await waitFor(async () => {
    const l = await links();
    return l.length >= 4 ? l : undefined;
  }, 20_000);
  t.ok(found, 'links were made after the syncs');
  const byType = (type: string) => (found ?? []).filter((l) => l.res_type === type);
  t.equal(byType('Patient').length, 1, 'the two Patients: one person');
  const condition = byType('Condition');
  t.equal(condition.length, 1, 'one Condition pair');
  const [ca, cb] = [await read(condition[0].a), await read(condition[0].b)];
  for (const c of [ca, cb])
    t.ok(
      c.code.coding.some((x: { code: string }) => x.code === '38341003'),
      `${c.id}: hypertension`,
    );
  t.equal(byType('AllergyIntolerance').length, 1, 'the penicillin allergy');
  // The 2024 flu shot is recorded alike at both; the same vaccine given the same day at both is one dose too.
  const imm: { l: LinkRow; a: Json; b: Json }[] = [];
  for (const l of byType('Immunization')) imm.push({ l, a: await read(l.a), b: await read(l.b) });
  t.ok(
    imm.some((x) => x.a.occurrenceDateTime.startsWith('2024-10-08') && x.b.occurrenceDateTime.startsWith('2024-10-08')),
    'the 2024 flu shot',
  );
  for (const { a, b } of imm)
    t.ok(
      a.vaccineCode.coding[0].code === b.vaccineCode.coding[0].code && a.occurrenceDateTime.slice(0, 10) === b.occurrenceDateTime.slice(0, 10),
      `${a.vaccineCode.coding[0].code} on ${a.occurrenceDateTime.slice(0, 10)} at both: one dose`,
    );
  const others = (found ?? []).filter((l) => !['Patient', 'Condition', 'AllergyIntolerance', 'Immunization'].includes(l.res_type));
  t.same(
    others.map((l) => `${l.a} ~ ${l.b} (${l.rule})`),
    [],
    'nothing else of the two records is linked',
  );
  const sources = new Set([ca.meta.source, cb.meta.source]);
  t.equal(sources.size, 2, 'the two come from the two systems');
  t.equal(ca.meta.versionId, '1', 'the records are untouched (no new version)');
});

t.test('again with nothing new: one look, under 50 ms; a rejected link stays rejected; a record gone takes its link', async (t) => {
  const again = await dedupPerson(app.pg, demo.id, user.id);
  t.equal(again.status, 'unchanged', 'nothing changed since the last run');
  t.ok(again.ms < 50, `answered in ${again.ms.toFixed(1)} ms`);
  const [allergy] = (await links()).filter((l) => l.res_type === 'AllergyIntolerance');
  await app.pg.query(`UPDATE trb_dedup_link SET status = 'rejected', decided_at = now() WHERE owner_id = $1 AND a_res_id = $2 AND b_res_id = $3`, [
    user.id,
    allergy.a_res_id,
    allergy.b_res_id,
  ]);
  // A change of the person's records (one deleted) makes the next run look again.
  const flu: LinkRow[] = [];
  for (const l of (await links()).filter((x) => x.res_type === 'Immunization'))
    if ((await read(l.a)).occurrenceDateTime.startsWith('2024-10-08')) flu.push(l);
  const del = await fetch(`${BASE}/fhir/r4/${flu[0].a}`, { method: 'DELETE', headers });
  t.equal(del.status, 200, 'one of the 2024 flu shots deleted');
  const run = await dedupPerson(app.pg, demo.id, user.id);
  t.equal(run.status, 'linked', 'ran again');
  const now = await links();
  t.notOk(
    now.some((l) => l.a_res_id === flu[0].a_res_id && l.b_res_id === flu[0].b_res_id),
    'the deleted record took its link with it',
  );
  const kept = now.filter((l) => l.res_type === 'AllergyIntolerance');
  t.same(
    kept.map((l) => l.status),
    ['rejected'],
    'the rejected pair is not made again, and its rejection is kept',
  );
});

t.test('the de-duplicated view (_dedup=merged) and the links as Linkage: list, confirm, reject (unmerge)', async (t) => {
  const search = async (q: string) => (await fetch(`${BASE}/fhir/r4/${q}`, { headers })).json();
  const hypertension = 'Condition?code=http://snomed.info/sct|38341003';
  const all = await search(hypertension);
  t.equal(all.entry.length, 2, 'a search returns both records, one from each system');
  const merged = await search(`${hypertension}&_dedup=merged`);
  t.equal(merged.entry.length, 1, '_dedup=merged: one hypertension');
  const ext = merged.entry[0].resource.extension.find((e: Json) => e.url === 'https://tributary.dev/fhir/StructureDefinition/dedup-merged');
  t.ok(ext, 'it names the records it stands for');
  const sources = ext.extension.filter((e: Json) => e.url === 'source').map((e: Json) => e.valueUri);
  t.equal(new Set(sources).size, 2, `with both sources: ${sources.join(', ')}`);
  const tags = ext.extension.filter((e: Json) => e.url === 'tag').map((e: Json) => e.valueCoding.code);
  t.ok(new Set(tags).size >= 2, `and the tags of each (the systems named): ${tags.join(', ')}`);
  const other = all.entry.map((e: Json) => e.resource.id).find((id: string) => id !== merged.entry[0].resource.id);
  t.same(
    ext.extension.filter((e: Json) => e.url === 'record').map((e: Json) => e.valueReference.reference),
    [`Condition/${other}`],
    'and the other record by reference',
  );
  const subjects = async (q: string) => {
    const b = await search(q);
    return new Set(b.entry.map((e: Json) => e.resource.subject?.reference ?? e.resource.patient?.reference).filter(Boolean));
  };
  t.equal((await subjects('Condition?_count=200')).size, 2, "each system's records name its own Patient");
  t.same(
    [...(await subjects('Condition?_count=200&_dedup=merged'))],
    [`Patient/${(await search('Patient?_dedup=merged')).entry[0].resource.id}`],
    'in the merged view, every record names the one Patient that stands for both',
  );
  t.equal((await search('Patient?_dedup=merged')).entry.length, 1, 'one Patient in the merged view');
  const withPatients = await search('Condition?_count=200&_include=Condition:subject&_dedup=merged');
  const includedPatients = withPatients.entry.filter((e: Json) => e.search.mode === 'include').map((e: Json) => `Patient/${e.resource.id}`);
  t.same(includedPatients, [...(await subjects('Condition?_count=200&_dedup=merged'))], '_include: the one Patient that stands for both, once');
  const count = await search('Condition?_summary=count&_dedup=merged');
  const countAll = await search('Condition?_summary=count');
  t.equal(count.total, countAll.total - 1, 'counts the merged view too');
  t.equal((await fetch(`${BASE}/fhir/r4/Condition?_dedup=maybe`, { headers })).status, 400, 'a _dedup that is not merged or none: 400');

  const list = await search('Linkage');
  t.equal(list.resourceType, 'Bundle');
  const condLink = list.entry.map((e: Json) => e.resource).find((l: Json) => l.item[0].resource.reference.startsWith('Condition/'));
  t.ok(condLink, 'the links as Linkage resources');
  t.same(
    condLink.item.map((i: Json) => i.type),
    ['source', 'alternate'],
  );
  t.equal(condLink.active, true);
  const confirmed = await (await fetch(`${BASE}/fhir/r4/Linkage/${condLink.id}/$confirm`, { method: 'POST', headers })).json();
  t.equal(confirmed.extension[0].extension.find((e: Json) => e.url === 'status').valueCode, 'confirmed', '$confirm');
  const rejected = await (await fetch(`${BASE}/fhir/r4/Linkage/${condLink.id}/$reject`, { method: 'POST', headers })).json();
  t.equal(rejected.active, false, '$reject: the link no longer active');
  t.equal((await search(`${hypertension}&_dedup=merged`)).entry.length, 2, 'unmerged: both records in the merged view again');
  await dedupPerson(app.pg, demo.id, user.id, { ...(await import('../../src/dedup/rules.ts')).DEFAULT_SETTINGS, threshold: 0.89 });
  t.equal((await search(`${hypertension}&_dedup=merged`)).entry.length, 2, 'and the rules (run again, other settings) never link them again');
  const write = await fetch(`${BASE}/fhir/r4/Linkage`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/fhir+json' },
    body: '{"resourceType":"Linkage"}',
  });
  t.equal(write.status, 405, 'Linkage is not written otherwise');
  t.equal((await fetch(`${BASE}/fhir/r4/Linkage/1-2`, { headers })).status, 404, 'an unknown link: 404');
  const other2 = (await app.auth.createUser(demo.id, 'someone-else'))!;
  const { access_token: otherToken } = await app.auth.exchangeCode(demo, await app.auth.newCode(demo.id, other2.id));
  const theirs = await (await fetch(`${BASE}/fhir/r4/Linkage`, { headers: { authorization: `Bearer ${otherToken}` } })).json();
  t.equal(theirs.entry.length, 0, "another person sees none of this person's links");
  t.equal(
    (await fetch(`${BASE}/fhir/r4/Linkage/${condLink.id}`, { headers: { authorization: `Bearer ${otherToken}` } })).status,
    404,
    'nor one by id',
  );
});

t.test('rules changed: every person de-duplicated again, once', async (t) => {
  const { DEFAULT_SETTINGS } = await import('../../src/dedup/rules.ts');
  const { rerunChangedRules } = await import('../../src/dedup/run.ts');
  const quiet = { info() {}, warn() {} };
  const wider = { ...DEFAULT_SETTINGS, conditionOnsetDays: 5 };
  const first = await rerunChangedRules(app.pg, wider, quiet);
  t.ok(first.people >= 1 && first.ran >= 1, `the person made with other rules is run again: ${JSON.stringify(first)}`);
  t.same(await rerunChangedRules(app.pg, wider, quiet), { people: 0, ran: 0 }, 'then nobody is left to run');
  t.equal((await dedupPerson(app.pg, demo.id, user.id, wider)).status, 'unchanged', 'and the next sync finds nothing to do');
});

t.test('a chain of links (a-b, b-c): the first record stands for all three in the merged view', async (t) => {
  const made: string[] = [];
  for (const source of ['https://one.example/fhir', 'https://two.example/fhir', 'https://three.example/fhir']) {
    const res = await fetch(`${BASE}/fhir/r4/Condition`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Condition', meta: { source }, subject: { reference: 'Patient/x' }, code: { text: 'chained disorder' } }),
    });
    made.push((await res.json()).id);
  }
  const { rows } = await app.pg.query<{ res_id: string; fhir_id: string }>(
    'SELECT res_id::text, fhir_id FROM hfj_resource WHERE fhir_id = ANY($1) ORDER BY res_id',
    [made],
  );
  const [a, b, c] = rows;
  for (const [x, y] of [
    [a, b],
    [b, c],
  ])
    await app.pg.query(
      `INSERT INTO trb_dedup_link (owner_id, partition_id, res_type, a_res_id, b_res_id, rule, score, status) VALUES ($1, $2, 'Condition', $3, $4, 'test', 1, 'confirmed')`,
      [user.id, demo.id, x.res_id, y.res_id],
    );
  const merged = await (await fetch(`${BASE}/fhir/r4/Condition?code:text=chained&_dedup=merged`, { headers })).json();
  t.same(
    merged.entry.map((e: Json) => e.resource.id),
    [a.fhir_id],
    'one record: the first of the chain',
  );
  const named = merged.entry[0].resource.extension[0].extension.filter((e: Json) => e.url === 'record').map((e: Json) => e.valueReference.reference);
  t.same(named.sort(), [`Condition/${b.fhir_id}`, `Condition/${c.fhir_id}`].sort(), 'naming the other two');
  const sources = merged.entry[0].resource.extension[0].extension.filter((e: Json) => e.url === 'source').map((e: Json) => e.valueUri);
  t.equal(new Set(sources).size, 3, 'and the three sources');
});
