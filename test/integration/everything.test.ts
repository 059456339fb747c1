/**
 * Patient/[id]/$everything: the patient, its compartment and what those reference, for the user's
 * own patient only; `_since` (changed after an instant), `_type` and `_count` with paging that adds
 * up; the token's scopes narrow the types; the CapabilityStatement lists the operation; parameters
 * it does not take are a 400.
 * See: https://hl7.org/fhir/R4/patient-operation-everything.html
 */
import t, { type Test } from 'tap';
import { buildTestApp } from '../helper.ts';
import { FHIR, FHIR_JSON, type Json, send } from './search-support.ts';

const app = await buildTestApp(t, { fhirAuth: 'required' });
const { app: client } = await app.auth.createApp({ name: 'Everything', redirectUris: ['https://app.example/cb'] });

async function userToken(name: string, scope?: string): Promise<string> {
  const user = (await app.auth.createUser(client.id, name))!;
  return (await app.auth.exchangeCode(client, await app.auth.newCode(client.id, user.id, scope))).access_token;
}
const get = (token: string, path: string) => send(app, { method: 'GET', url: `${FHIR}/${path}`, headers: { authorization: `Bearer ${token}` } });
const typed = (b: Json, mode?: string): string[] =>
  (b.entry ?? [])
    .filter((e: Json) => !mode || e.search?.mode === mode)
    .map((e: Json) => `${e.resource.resourceType}/${e.resource.id}`)
    .sort();

/** Follows next links from `path`; every match and include, in order. */
async function allPages(t: Test, token: string, path: string): Promise<{ matches: string[]; includes: string[]; pages: number }> {
  const out = { matches: [] as string[], includes: [] as string[], pages: 0 };
  let next: string | undefined = path;
  while (next) {
    const res = await get(token, next);
    t.equal(res.statusCode, 200, `page ${out.pages + 1}${res.statusCode === 200 ? '' : `: ${res.body.slice(0, 300)}`}`);
    const b = res.json();
    out.pages++;
    out.matches.push(...typed(b, 'match'));
    out.includes.push(...typed(b, 'include'));
    const url: string | undefined = b.link?.find((l: Json) => l.relation === 'next')?.url;
    next = url?.slice(url.indexOf(`${FHIR}/`) + FHIR.length + 1);
  }
  return out;
}

const ann = await userToken('ann');
const bob = await userToken('bob');
const tx = (token: string, resources: Json[]) =>
  send(app, {
    method: 'POST',
    url: FHIR,
    headers: { authorization: `Bearer ${token}`, 'content-type': FHIR_JSON },
    payload: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: resources.map((r) => ({ resource: r, request: { method: 'PUT', url: `${r.resourceType}/${r.id}` } })),
    },
  });
const annRecords = [
  { resourceType: 'Patient', id: 'ann', name: [{ family: 'Ng' }], generalPractitioner: [{ reference: 'Practitioner/dr' }] },
  { resourceType: 'Practitioner', id: 'dr', name: [{ family: 'Osei' }] },
  { resourceType: 'Practitioner', id: 'unrelated', name: [{ family: 'Nobody' }] },
  {
    resourceType: 'Encounter',
    id: 'enc',
    status: 'finished',
    class: { code: 'AMB' },
    subject: { reference: 'Patient/ann' },
    participant: [{ individual: { reference: 'Practitioner/dr' } }],
  },
  { resourceType: 'Condition', id: 'cond', subject: { reference: 'Patient/ann' }, code: { text: 'Asthma' } },
  ...Array.from({ length: 5 }, (_, i) => ({
    resourceType: 'Observation',
    id: `obs${i}`,
    status: 'final',
    code: { text: 'Steps' },
    subject: { reference: 'Patient/ann' },
    encounter: { reference: 'Encounter/enc' },
  })),
];
for (const [token, records] of [
  [ann, annRecords],
  [
    bob,
    [
      { resourceType: 'Patient', id: 'bob' },
      { resourceType: 'Observation', id: 'bobs', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/bob' } },
    ],
  ],
] as const) {
  const res = await tx(token, records as Json[]);
  if (res.statusCode !== 200) throw new Error(`the fixture was refused: ${res.body.slice(0, 500)}`);
}
const compartment = [
  'Condition/cond',
  'Encounter/enc',
  'Observation/obs0',
  'Observation/obs1',
  'Observation/obs2',
  'Observation/obs3',
  'Observation/obs4',
  'Patient/ann',
];

t.test('the patient, its compartment, and what they reference; nothing else', async (t) => {
  const res = await get(ann, 'Patient/ann/$everything');
  t.equal(res.statusCode, 200);
  const b = res.json();
  t.equal(b.type, 'searchset');
  t.same(typed(b, 'match'), compartment);
  t.same(typed(b, 'include'), ['Practitioner/dr'], 'the practitioner they reference, not the unrelated one');
});

t.test('paging with _count adds up to the whole, each match once', async (t) => {
  const all = await allPages(t, ann, 'Patient/ann/$everything?_count=3');
  t.equal(all.pages, 3);
  t.same(all.matches.sort(), compartment);
});

t.test('_since keeps what changed after the instant; _type narrows', async (t) => {
  const mark = new Date().toISOString();
  await new Promise((r) => setTimeout(r, 20));
  t.same(typed((await get(ann, `Patient/ann/$everything?_since=${encodeURIComponent(mark)}`)).json()), [], 'nothing changed since');
  const changed = { ...annRecords[4], note: [{ text: 'Edited.' }] };
  t.equal((await tx(ann, [changed])).statusCode, 200);
  const since = (await get(ann, `Patient/ann/$everything?_since=${encodeURIComponent(mark)}`)).json();
  t.same(typed(since, 'match'), ['Condition/cond'], 'only the changed resource matches');
  t.same(typed((await get(ann, 'Patient/ann/$everything?_type=Encounter,Patient')).json(), 'match'), ['Encounter/enc', 'Patient/ann']);
  const paged = await allPages(t, ann, 'Patient/ann/$everything?_type=Observation&_count=2');
  t.same(
    paged.matches.sort(),
    compartment.filter((x) => x.startsWith('Observation/')),
    'the next links keep _type',
  );
});

t.test("another user's patient is not found: no data crosses", async (t) => {
  t.same(typed((await get(ann, 'Patient/bob/$everything')).json()), []);
  t.same(typed((await get(bob, 'Patient/ann/$everything')).json()), []);
  t.same(typed((await get(bob, 'Patient/bob/$everything')).json(), 'match'), ['Observation/bobs', 'Patient/bob']);
});

t.test("the token's scopes narrow the types", async (t) => {
  const user = (await app.auth.findUser(client.id, { appUserId: 'ann' }))!;
  const narrow = (await app.auth.exchangeCode(client, await app.auth.newCode(client.id, user.id, 'patient/Observation.rs patient/Patient.rs')))
    .access_token;
  t.same(
    typed((await get(narrow, 'Patient/ann/$everything')).json(), 'match').map((x) => x.split('/')[0]),
    ['Observation', 'Observation', 'Observation', 'Observation', 'Observation', 'Patient'],
  );
  const none = (await app.auth.exchangeCode(client, await app.auth.newCode(client.id, user.id, 'patient/Practitioner.rs'))).access_token;
  t.equal((await get(none, 'Patient/ann/$everything')).statusCode, 403);
});

t.test('bad input is a 400; the CapabilityStatement lists the operation', async (t) => {
  for (const q of ['start=2020-01-01', '_since=yesterday', '_count=abc', '_type=NotAType', '_page=zzz']) {
    const res = await get(ann, `Patient/ann/$everything?${q}`);
    t.equal(res.statusCode, 400, q);
    t.equal(res.json().resourceType, 'OperationOutcome', q);
  }
  const cs = (await send(app, { method: 'GET', url: `${FHIR}/metadata` })).json();
  const patient = cs.rest[0].resource.find((r: Json) => r.type === 'Patient');
  t.match(patient.operation, [{ name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' }]);
});
