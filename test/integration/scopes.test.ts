/**
 * SMART scopes bound every read path, not only the type a request names: `_include` and
 * `_revinclude` (with `:iterate` and `*`), `Patient/[id]/$everything`'s includes, type and system
 * `_history`, `_type` and system searches, chains and `_has`, and a Bundle's GET entries. Included
 * resources are of granted types with v2 filters applied; where a filter cannot be applied the
 * request is a 403 naming the scope. Tokens are issued through the auth store as the SMART flow does.
 * See: https://build.fhir.org/ig/HL7/smart-app-launch/scopes-and-launch-context.html
 */
import t from 'tap';
import { buildTestApp } from '../helper.ts';
import { FHIR, FHIR_JSON, type Json, send } from './search-support.ts';

const app = await buildTestApp(t, { fhirAuth: 'required' });
const { app: client } = await app.auth.createApp({ name: 'Scopes', redirectUris: ['https://app.example/cb'] });
const user = (await app.auth.createUser(client.id, 'ann'))!;

/** A token of the user with exactly these scopes. */
const token = async (scope: string) => (await app.auth.exchangeCode(client, await app.auth.newCode(client.id, user.id, scope))).access_token;
const get = (tok: string, path: string) => send(app, { method: 'GET', url: `${FHIR}/${path}`, headers: { authorization: `Bearer ${tok}` } });
/** Type/id of the entries (of one search mode), sorted. */
const ids = (b: Json, mode?: string): string[] =>
  (b.entry ?? [])
    .filter((e: Json) => e.resource?.resourceType !== 'OperationOutcome' && (!mode || e.search?.mode === mode))
    .map((e: Json) => `${e.resource.resourceType}/${e.resource.id}`)
    .sort();
const types = (b: Json): string[] => [...new Set(ids(b).map((x) => x.split('/')[0]))].sort();

const cat = (code: string) => [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code }] }];
const obs = (id: string, category: string, extra: Json = {}) => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  category: cat(category),
  code: { text: id },
  subject: { reference: 'Patient/ann' },
  performer: [{ reference: 'Practitioner/dr' }],
  ...extra,
});
const records: Json[] = [
  { resourceType: 'Patient', id: 'ann', name: [{ family: 'Ng' }], generalPractitioner: [{ reference: 'Practitioner/dr' }] },
  { resourceType: 'Practitioner', id: 'dr', name: [{ family: 'Osei' }] },
  obs('lab', 'laboratory'),
  obs('vital', 'vital-signs'),
  // A lab panel whose member is a vital sign, and a vital-signs panel whose member is a lab.
  obs('lab-panel', 'laboratory', { hasMember: [{ reference: 'Observation/vital' }] }),
  obs('vital-panel', 'vital-signs', { hasMember: [{ reference: 'Observation/lab' }] }),
  {
    resourceType: 'Condition',
    id: 'cond',
    subject: { reference: 'Patient/ann' },
    asserter: { reference: 'Practitioner/dr' },
    code: { text: 'Asthma' },
  },
  {
    resourceType: 'Provenance',
    id: 'prov',
    target: [{ reference: 'Observation/lab' }, { reference: 'Observation/vital' }, { reference: 'Condition/cond' }],
    recorded: '2024-01-01T00:00:00Z',
    agent: [{ who: { reference: 'Practitioner/dr' } }],
  },
];
const all = await token('patient/*.cruds');
const put = (resources: Json[]) =>
  send(app, {
    method: 'POST',
    url: FHIR,
    headers: { authorization: `Bearer ${all}`, 'content-type': FHIR_JSON },
    payload: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: resources.map((r) => ({ resource: r, request: { method: 'PUT', url: `${r.resourceType}/${r.id}` } })),
    },
  });
const stored = await put(records);
if (stored.statusCode !== 200) throw new Error(`the fixture was refused: ${stored.body.slice(0, 500)}`);
// A second version of the vital sign and of the lab, for the histories.
await put([
  { ...obs('vital', 'vital-signs'), note: [{ text: 'again' }] },
  { ...obs('lab', 'laboratory'), note: [{ text: 'again' }] },
]);

const LABS = 'patient/Observation.rs?category=laboratory';

t.test('_include returns only granted types', async (t) => {
  const tok = await token('patient/Observation.rs');
  for (const q of [
    '_include=Observation:performer',
    '_include=Observation:*',
    '_include=*',
    '_include=Observation:subject&_include:iterate=Patient:general-practitioner',
  ]) {
    const res = await get(tok, `Observation?${q}`);
    t.equal(res.statusCode, 200, q);
    t.same(types(res.json()), ['Observation'], `${q}: no Practitioner, no Patient`);
  }
  // The same search with the types granted includes them (the fixture does reach them).
  const wide = await token('patient/Observation.rs patient/Practitioner.rs');
  t.same(ids((await get(wide, 'Observation?_include=Observation:performer')).json(), 'include'), ['Practitioner/dr']);
});

t.test('_revinclude returns only granted types', async (t) => {
  const tok = await token('patient/Observation.rs');
  for (const q of ['_revinclude=Provenance:target', '_revinclude=*', '_revinclude:iterate=Provenance:target']) {
    const res = await get(tok, `Observation?_id=lab&${q}`);
    t.equal(res.statusCode, 200, q);
    t.notOk(
      ids(res.json()).some((x) => x.startsWith('Provenance/')),
      `${q}: no Provenance`,
    );
    t.ok(ids(res.json()).includes('Observation/lab'), q);
  }
  const wide = await token('patient/Observation.rs patient/Provenance.rs');
  t.same(ids((await get(wide, 'Observation?_id=lab&_revinclude=Provenance:target')).json(), 'include'), ['Provenance/prov']);
});

t.test('a v2 filter applies to what is included, not only to the matches', async (t) => {
  const tok = await token(LABS);
  const inc = (await get(tok, 'Observation?_include=Observation:has-member')).json();
  t.same(ids(inc, 'match'), ['Observation/lab', 'Observation/lab-panel']);
  t.same(ids(inc, 'include'), [], "the lab panel's vital-sign member is not included");
  const rev = (await get(tok, 'Observation?_id=lab&_revinclude=Observation:has-member')).json();
  t.same(ids(rev), ['Observation/lab'], 'the vital-signs panel that has the lab as member is not included');
  const iter = (await get(tok, 'Observation?_id=lab-panel&_include:iterate=Observation:has-member&_include=*')).json();
  t.same(ids(iter), ['Observation/lab-panel']);
  // Two filtered scopes of one type are alternatives.
  const both = await token(`${LABS} patient/Observation.rs?category=vital-signs`);
  t.same(ids((await get(both, 'Observation?_id=lab-panel&_include=Observation:has-member')).json()), ['Observation/lab-panel', 'Observation/vital']);
});

t.test('a filter the type cannot apply is a 403 naming the scope, never ignored', async (t) => {
  const tok = await token('patient/Observation.rs?flavour=lemon');
  const res = await get(tok, 'Observation');
  t.equal(res.statusCode, 403);
  t.match(res.json().issue[0].diagnostics, /patient\/Observation\.rs\?flavour=lemon/);
  const star = await token('patient/*.rs?category=laboratory');
  const across = await get(star, '?_lastUpdated=gt2000-01-01');
  t.equal(across.statusCode, 403, "a type's parameter as a filter across all types");
  t.same(
    ids((await get(star, 'Observation')).json()),
    ['Observation/lab', 'Observation/lab-panel'],
    'the same scope applies to a search of one type',
  );
});

t.test('$everything with some types returns those only', async (t) => {
  const cond = await token('patient/Condition.rs');
  const res = await get(cond, 'Patient/ann/$everything');
  t.equal(res.statusCode, 200);
  t.same(ids(res.json()), ['Condition/cond'], 'no Patient, no Practitioner, no Provenance');
  const withPatient = await token('patient/Condition.rs patient/Patient.rs');
  t.same(
    ids((await get(withPatient, 'Patient/ann/$everything')).json()),
    ['Condition/cond', 'Patient/ann'],
    'the Patient when Patient is granted; still no Practitioner',
  );
  const labs = await token(`${LABS} patient/Patient.rs`);
  t.same(
    ids((await get(labs, 'Patient/ann/$everything')).json()),
    ['Observation/lab', 'Observation/lab-panel', 'Patient/ann'],
    'a filtered type with its filter applied',
  );
});

t.test('type _history: granted whole, or refused when only a filter grants it', async (t) => {
  const labs = await token(LABS);
  const refused = await get(labs, 'Observation/_history');
  t.equal(refused.statusCode, 403);
  t.match(refused.json().issue[0].diagnostics, /category=laboratory/);
  t.equal((await get(labs, 'Observation/vital/_history')).statusCode, 403, "nor one resource's");
  const whole = await token('patient/Observation.rs');
  const h = (await get(whole, 'Observation/_history')).json();
  t.equal(h.total, 6, 'four Observations, two of them twice');
  t.equal((await get(whole, 'Condition/_history')).statusCode, 403);
});

t.test('system _history returns the granted types only', async (t) => {
  const tok = await token('patient/Observation.rs patient/Condition.rs');
  const res = await get(tok, '_history');
  t.equal(res.statusCode, 200);
  const b = res.json();
  t.same([...new Set(b.entry.map((e: Json) => e.resource.resourceType))].sort(), ['Condition', 'Observation']);
  t.equal(b.total, 7);
  // Newest first, paged: the pages add up to the whole, each entry once.
  const seen: string[] = [];
  let next: string | undefined = '_history?_count=3';
  while (next) {
    const page: Json = (await get(tok, next)).json();
    seen.push(...page.entry.map((e: Json) => `${e.resource.resourceType}/${e.resource.id}/${e.resource.meta.versionId}`));
    const url: string | undefined = page.link.find((l: Json) => l.relation === 'next')?.url;
    next = url?.slice(url.indexOf(`${FHIR}/`) + FHIR.length + 1);
  }
  t.equal(new Set(seen).size, 7);
  t.equal((await get(await token(`${LABS} patient/Condition.rs`), '_history')).statusCode, 403, 'a filter cannot apply to past versions');
  t.equal((await get(await token('patient/*.rs'), '_history')).json().total, 10, 'every type with patient/*.rs');
});

t.test('_type and system searches: granted types only, filters applied', async (t) => {
  const obsOnly = await token('patient/Observation.rs');
  t.equal((await get(obsOnly, '?_type=Observation,Practitioner')).statusCode, 403, 'an ungranted type named');
  t.same(types((await get(obsOnly, '?_lastUpdated=gt2000-01-01')).json()), ['Observation'], 'a search of all types returns the granted ones');
  const mixed = await token(`${LABS} patient/Condition.rs`);
  const res = await get(mixed, '?_type=Observation,Condition');
  t.equal(res.statusCode, 200);
  t.same(ids(res.json()), ['Condition/cond', 'Observation/lab', 'Observation/lab-panel']);
});

t.test('chains and _has through an ungranted type are refused; through a filtered one, filtered', async (t) => {
  const obsOnly = await token('patient/Observation.rs');
  for (const q of ['performer:Practitioner.name=Osei', 'subject.name=Ng', '_has:Provenance:target:agent=Practitioner/dr']) {
    const res = await get(obsOnly, `Observation?${q}`);
    t.equal(res.statusCode, 403, q);
    t.match(res.json().issue[0].diagnostics, /scopes do not allow search on [A-Z]\w+ \(patient\/\w+\.rs or patient\/\*\.rs is missing\)/, q);
  }
  const wide = await token('patient/Observation.rs patient/Practitioner.rs');
  t.equal((await get(wide, 'Observation?performer:Practitioner.name=Osei')).json().total, 4, 'the chain works once its target is granted');
  // Provenance granted whole, Observation only as labs: a chain to a vital sign finds nothing.
  const unfiltered = await token('patient/Provenance.rs patient/Observation.rs');
  t.same(
    ids((await get(unfiltered, 'Provenance?target:Observation.category=vital-signs')).json()),
    ['Provenance/prov'],
    'the fixture: the chain reaches a vital sign',
  );
  const prov = await token(`patient/Provenance.rs ${LABS}`);
  t.same(ids((await get(prov, 'Provenance?target:Observation._id=lab')).json()), ['Provenance/prov']);
  t.same(ids((await get(prov, 'Provenance?target:Observation.category=vital-signs')).json()), [], 'the filter holds in the chain');
  t.same(ids((await get(prov, 'Observation?_has:Provenance:target:_id=prov')).json()), ['Observation/lab']);
});

t.test("a Bundle's GET entries keep the scopes, includes and filters too", async (t) => {
  const labs = await token(LABS);
  const res = await send(app, {
    method: 'POST',
    url: FHIR,
    headers: { authorization: `Bearer ${labs}`, 'content-type': FHIR_JSON },
    payload: {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [{ request: { method: 'GET', url: 'Observation?_include=Observation:performer&_include=Observation:has-member' } }],
    },
  });
  t.equal(res.statusCode, 200);
  const inner = res.json().entry[0].resource;
  t.same(ids(inner), ['Observation/lab', 'Observation/lab-panel']);
});
