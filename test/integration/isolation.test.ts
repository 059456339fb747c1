/**
 * Data isolation between apps (tenants) and between the users of one app.
 *
 * Two apps, A and B, each with two users (A1, A2, B1, B2). Every user writes, with their own
 * token: a Patient, a Practitioner, an Encounter (subject: the Patient; participant: the
 * Practitioner), an Observation (subject: the Patient; encounter: the Encounter), a Provenance
 * (target: the Observation), and a Patient stored with PUT under a client-chosen id.
 * Then user A1 tries every way across the lines we know of: reads, searches, includes, chains,
 * _has, history, compartments, batches, transactions, conditional and plain writes, $reindex.
 * The secure answer is a 404 (never a 403, never a 200 with the other's data) or the other's
 * data simply missing from the results; and the victims (A2, B1, B2) read exactly the same
 * versions before and after.
 *
 * Every resource carries a meta.tag naming the user who wrote it (urn:tributary-test:owner), so
 * a result can be checked resource by resource: whatever A1 gets back must be tagged a1.
 * Reads and searches (A1's and the apps') run before the write attacks, so that what each of them
 * may see is the fixture and nothing A1's attacks wrote.
 */
import t, { type Test } from 'tap';
import type { App } from '../../src/auth/store.ts';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildTestApp } from '../helper.ts';
import { FHIR, FHIR_JSON, ORIGIN, type Json, entries, linkOf, send, url } from './search-support.ts';

const app = await buildTestApp(t, { fhirAuth: 'required' });

// --- People and requests -------------------------------------------------------------------------

type Headers = Record<string, string>;
const OWNER_TAG = 'urn:tributary-test:owner';
const CODE_SYSTEM = 'urn:tributary-test:code';
const PATIENT_ID_SYSTEM = 'urn:tributary-test:patient';
const OBS_ID_SYSTEM = 'urn:tributary-test:observation';

interface Tenant {
  name: string;
  app: App;
  secret: string;
}

/** The typed ids ("Type/id") of a user's fixture. */
interface Fixture {
  patient: string;
  practitioner: string;
  encounter: string;
  observation: string;
  provenance: string;
  /** The Patient stored with PUT under a client-chosen id (`<tag>-fixed`). */
  fixed: string;
}

interface Person {
  /** a1, a2, b1, b2: also the owner tag of everything the person writes. */
  tag: string;
  tenant: Tenant;
  /** The oneup_user_id. */
  userId: string;
  /** Authorization: Bearer with the person's own access token. */
  headers: Headers;
  res: Fixture;
  /** Every typed id the person wrote during the setup (the victims' resources are compared at the end). */
  own: string[];
}

/** The client credentials of an app, acting for all its users ('client') or for one of them. */
const asApp = (tenant: Tenant, who: string): Headers => ({ client_id: tenant.app.clientId, client_secret: tenant.secret, 'x-oneup-user-id': who });

async function request(method: InjectOptions['method'], target: string, headers: Headers, payload?: object): Promise<LightMyRequestResponse> {
  const h = payload === undefined ? headers : { ...headers, 'content-type': FHIR_JSON };
  return send(app, { method, url: target, headers: h, payload });
}

/** The body as JSON, or {} when it is not JSON (the status assertion then tells what came). */
function jsonOf(res: LightMyRequestResponse): Json {
  try {
    return res.json();
  } catch {
    return {};
  }
}

const idOf = (typed: string): string => typed.split('/')[1];
const tagged = (tag: string): Json => ({ tag: [{ system: OWNER_TAG, code: tag }] });
/** The owner tag of a resource ('untagged' when it has none). */
const ownerOf = (r: Json | undefined): string => r?.meta?.tag?.find((x: Json) => x.system === OWNER_TAG)?.code ?? 'untagged';
/** "Type/id (owner)" of every resource not written by `tag`: what must stay empty. */
const strays = (resources: (Json | undefined)[], tag: string): string[] =>
  resources.filter((r) => ownerOf(r) !== tag).map((r) => `${r?.resourceType}/${r?.id} (${ownerOf(r)})`);
const short = (res: LightMyRequestResponse): string => `${res.statusCode} ${res.body.slice(0, 300)}`;

async function newTenant(name: string): Promise<Tenant> {
  const { app: created, clientSecret } = await app.auth.createApp({ name });
  return { name, app: created, secret: clientSecret };
}

async function newPerson(tenant: Tenant, tag: string): Promise<Person> {
  const user = await app.auth.createUser(tenant.app.id, tag);
  if (!user) throw new Error(`user ${tag} exists already`);
  const tokens = await app.auth.exchangeCode(tenant.app, await app.auth.newCode(tenant.app.id, user.id));
  return { tag, tenant, userId: user.id, headers: { authorization: `Bearer ${tokens.access_token}` }, res: {} as Fixture, own: [] };
}

/** Writes a resource as the person (tagged with the person); throws unless it is stored. */
async function write(p: Person, method: 'POST' | 'PUT', resource: Json): Promise<string> {
  const target = method === 'POST' ? `${FHIR}/${resource.resourceType}` : `${FHIR}/${resource.resourceType}/${resource.id}`;
  const res = await request(method, target, p.headers, { ...resource, meta: tagged(p.tag) });
  if (res.statusCode !== 201) throw new Error(`fixture ${method} ${target} as ${p.tag} answered ${short(res)}`);
  const typed = `${resource.resourceType}/${res.json().id}`;
  p.own.push(typed);
  return typed;
}

const observation = (tag: string, subject: string, extra: Json = {}): Json => ({
  resourceType: 'Observation',
  status: 'final',
  code: { coding: [{ system: CODE_SYSTEM, code: `code-${tag}` }] },
  subject: { reference: subject },
  valueString: `value of ${tag}`,
  ...extra,
});

/** The person's fixture, written through the FHIR API with the person's own token. */
async function seed(p: Person): Promise<void> {
  const family = `Isolation-${p.tag.toUpperCase()}`;
  const patient = await write(p, 'POST', { resourceType: 'Patient', identifier: [{ system: PATIENT_ID_SYSTEM, value: p.tag }], name: [{ family }] });
  const practitioner = await write(p, 'POST', { resourceType: 'Practitioner', name: [{ family: `Doctor-${p.tag}` }] });
  const encounter = await write(p, 'POST', {
    resourceType: 'Encounter',
    status: 'finished',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
    subject: { reference: patient },
    participant: [{ individual: { reference: practitioner } }],
  });
  const obs = await write(
    p,
    'POST',
    observation(p.tag, patient, { identifier: [{ system: OBS_ID_SYSTEM, value: p.tag }], encounter: { reference: encounter } }),
  );
  const provenance = await write(p, 'POST', {
    resourceType: 'Provenance',
    target: [{ reference: obs }],
    recorded: '2024-05-01T10:00:00Z',
    agent: [{ who: { reference: practitioner } }],
  });
  const fixed = await write(p, 'PUT', { resourceType: 'Patient', id: `${p.tag}-fixed`, name: [{ family: `${family}-Fixed` }] });
  p.res = { patient, practitioner, encounter, observation: obs, provenance, fixed };
}

// --- Setup ---------------------------------------------------------------------------------------

const tenantA = await newTenant('App A');
const tenantB = await newTenant('App B');
const a1 = await newPerson(tenantA, 'a1');
const a2 = await newPerson(tenantA, 'a2');
const b1 = await newPerson(tenantB, 'b1');
const b2 = await newPerson(tenantB, 'b2');
for (const p of [a1, a2, b1, b2]) await seed(p);

// References across the line between A1 and A2 (a reference is only a string; writing one
// must not open the target to its writer):
// - A1's Observation whose subject is A2's Patient (for _include, chains, compartments);
const a1CrossObs = await write(a1, 'POST', observation('a1', a2.res.patient));
// - A2's Observation, with the code only A2 uses, whose subject is A1's Patient (for _has and
//   _revinclude: its existence must not show in A1's results);
const a2CrossObs = await write(a2, 'POST', observation('a2', a1.res.patient));
// - A2's Provenance targeting A1's Observation (for _revinclude of Provenance).
const a2CrossProv = await write(a2, 'POST', {
  resourceType: 'Provenance',
  target: [{ reference: a1.res.observation }],
  recorded: '2024-05-02T10:00:00Z',
  agent: [{ who: { reference: a2.res.practitioner } }],
});
// The same client-chosen id in both apps: two resources, one per app.
const TWIN = 'Patient/twin';
await write(a1, 'PUT', { resourceType: 'Patient', id: 'twin', name: [{ family: 'Twin-A1' }] });
await write(b1, 'PUT', { resourceType: 'Patient', id: 'twin', name: [{ family: 'Twin-B1' }] });

const victims = [a2, b1, b2];

/** Reads a resource as its owner: the resource, or undefined when the owner cannot read it. */
async function readAsOwner(p: Person, typed: string): Promise<Json | undefined> {
  const res = await request('GET', `${FHIR}/${typed}`, p.headers);
  return res.statusCode === 200 ? res.json() : undefined;
}

/** Every victim resource as its owner reads it after the setup: "person/Type/id" → resource. */
const before = new Map<string, Json>();
for (const v of victims) {
  for (const typed of v.own) {
    const r = await readAsOwner(v, typed);
    if (!r) throw new Error(`${v.tag} cannot read its own ${typed}`);
    before.set(`${v.tag}/${typed}`, r);
  }
}

/** The victim still reads the resource exactly as before the attacks (same versionId, same content). */
async function unchanged(t: Test, v: Person, typed: string): Promise<void> {
  const now = await readAsOwner(v, typed);
  const then = before.get(`${v.tag}/${typed}`)!;
  t.equal(now?.meta?.versionId, then.meta.versionId, `${v.tag}'s ${typed} still at version ${then.meta.versionId}`);
  t.same(now, then, `${v.tag}'s ${typed} has the same content`);
}

// --- Credentials ---------------------------------------------------------------------------------

t.test('credentials: none, made-up or mismatched ones get a 401; metadata is open', async (t) => {
  const none = await request('GET', `${FHIR}/Patient`, {});
  t.equal(none.statusCode, 401, 'no credentials: 401');
  t.equal(jsonOf(none).resourceType, 'OperationOutcome', 'with an OperationOutcome');
  t.ok(none.headers['www-authenticate'], 'and a WWW-Authenticate header');
  const write401 = await request('POST', `${FHIR}/Patient`, {}, { resourceType: 'Patient' });
  t.equal(write401.statusCode, 401, 'a write without credentials: 401');

  const metadata = await request('GET', `${FHIR}/metadata`, {});
  t.equal(metadata.statusCode, 200, 'metadata needs no credentials');
  t.equal(jsonOf(metadata).resourceType, 'CapabilityStatement');

  const madeUp = await request('GET', `${FHIR}/Patient`, { authorization: 'Bearer made-up-token-0123456789' });
  t.equal(madeUp.statusCode, 401, 'a made-up bearer token: 401');
  t.equal(jsonOf(madeUp).resourceType, 'OperationOutcome');

  const otherUser = await request('GET', `${FHIR}/Patient`, asApp(tenantA, b1.userId));
  t.equal(otherUser.statusCode, 401, "app A's credentials acting as B1 (a user of app B): 401");
  const otherSecret = await request('GET', `${FHIR}/Patient`, { ...asApp(tenantA, 'client'), client_secret: tenantB.secret });
  t.equal(otherSecret.statusCode, 401, "app A's client_id with app B's secret: 401");
  const nobody = await request('GET', `${FHIR}/Patient`, { client_id: tenantA.app.clientId, client_secret: tenantA.secret });
  t.equal(nobody.statusCode, 401, 'client credentials without x-oneup-user-id: 401');

  const own = await request('GET', `${FHIR}/${a1.res.patient}`, a1.headers);
  t.equal(own.statusCode, 200, "A1's token reads A1's own Patient (the control)");
});

t.test('client-chosen ids are per app: A1 and B1 each have their own Patient/twin', async (t) => {
  const a = await request('GET', `${FHIR}/${TWIN}`, a1.headers);
  t.equal(a.statusCode, 200);
  t.equal(jsonOf(a).name?.[0]?.family, 'Twin-A1', "A1 reads A1's twin");
  t.equal(jsonOf(a).meta?.versionId, '1', "B1's PUT of the same id made no version of A1's");
  const b = await request('GET', `${FHIR}/${TWIN}`, b1.headers);
  t.equal(jsonOf(b).name?.[0]?.family, 'Twin-B1', "B1 reads B1's twin");
});

// --- Reads ---------------------------------------------------------------------------------------

t.test("read and vread of another user's or another app's resources: 404", async (t) => {
  for (const v of victims) {
    // Patient/twin is also A1's own (ids are per app): the twin test covers it.
    for (const typed of v.own.filter((x) => !a1.own.includes(x))) {
      const read = await request('GET', `${FHIR}/${typed}`, a1.headers);
      t.equal(read.statusCode, 404, `read ${v.tag}'s ${typed} as a1: 404 (got ${short(read)})`);
      t.equal(jsonOf(read).resourceType, 'OperationOutcome', 'with an OperationOutcome');
      const vread = await request('GET', `${FHIR}/${typed}/_history/1`, a1.headers);
      t.equal(vread.statusCode, 404, `vread ${v.tag}'s ${typed}/_history/1 as a1: 404 (got ${short(vread)})`);
    }
  }
});

// --- Searches ------------------------------------------------------------------------------------

/** A search's pages, all of them: the status of the first, the matches and the included resources. */
async function searchPages(headers: Headers, q: string): Promise<{ status: number; body: string; matches: Json[]; included: Json[] }> {
  const out = { status: 0, body: '', matches: [] as Json[], included: [] as Json[] };
  let next: string | undefined = url(q);
  while (next) {
    const res = await request('GET', next, headers);
    if (!out.status) Object.assign(out, { status: res.statusCode, body: res.body });
    if (res.statusCode !== 200) break;
    const page = res.json();
    for (const e of entries(page)) (e.search?.mode === 'include' ? out.included : out.matches).push(e.resource);
    next = linkOf(page, 'next')?.slice(ORIGIN.length);
  }
  return out;
}

const typedIds = (resources: Json[]): string[] => resources.map((r) => `${r.resourceType}/${r.id}`);

/**
 * Runs a search as `who` and checks that it answers 200 with only the person's own resources,
 * matches and includes alike; `expect` lists typed ids that must be among the matches (the
 * control that the search works at all), [] for a search that must match nothing.
 */
async function searchOwn(t: Test, who: Person, q: string, expect: string[]): Promise<{ typed: string[]; included: string[] }> {
  const r = await searchPages(who.headers, q);
  t.equal(r.status, 200, `${q}: 200 (${r.body.slice(0, 200)})`);
  t.same(strays([...r.matches, ...r.included], who.tag), [], `${q}: nothing but ${who.tag}'s own resources`);
  const typed = typedIds(r.matches);
  if (expect.length === 0) t.same(typed, [], `${q}: no match`);
  for (const x of expect) t.ok(typed.includes(x), `${q}: finds ${who.tag}'s ${x}`);
  return { typed, included: typedIds(r.included) };
}

t.test("searches find only A1's own resources", async (t) => {
  const a2Patient = idOf(a2.res.patient);
  const all = await searchOwn(t, a1, 'Patient?_count=1000', [a1.res.patient, a1.res.fixed, TWIN]);
  t.notOk(all.typed.includes(a2.res.patient), "all Patients: not A2's");
  await searchOwn(t, a1, `Patient?_id=${a2Patient}`, []);
  await searchOwn(t, a1, `Patient?_id=${idOf(b1.res.patient)}`, []);
  await searchOwn(t, a1, `Patient?_id=${a2Patient},${idOf(a1.res.patient)}`, [a1.res.patient]);
  await searchOwn(t, a1, `Patient?identifier=${PATIENT_ID_SYSTEM}|a2`, []);
  await searchOwn(t, a1, 'Patient?name=Isolation-A2', []);
  await searchOwn(t, a1, 'Patient?name=Isolation-B1', []);
  // A1's own Observation about A2's Patient may be found (it is A1's); A2's Observations may not.
  for (const q of [`Observation?patient=${a2Patient}`, `Observation?subject=${a2.res.patient}`]) {
    const r = await searchOwn(t, a1, q, [a1CrossObs]);
    t.notOk(r.typed.includes(a2.res.observation), `${q}: not A2's Observation`);
  }
  await searchOwn(t, a1, `Observation?patient=${idOf(b1.res.patient)}`, []);
  await searchOwn(t, a1, `Observation?code=${CODE_SYSTEM}|code-a2`, []);
  await searchOwn(t, a1, `Observation?identifier=${OBS_ID_SYSTEM}|a2`, []);
  await searchOwn(t, a1, `Observation?_count=1000`, [a1.res.observation, a1CrossObs]);
  await searchOwn(t, a1, `Encounter?practitioner=${idOf(a2.res.practitioner)}`, []);
  await searchOwn(t, a1, `Provenance?target=${a2.res.observation}`, []);
  const prov = await searchOwn(t, a1, `Provenance?target=${a1.res.observation}`, [a1.res.provenance]);
  t.notOk(prov.typed.includes(a2CrossProv), "Provenance?target=<A1's Observation>: not A2's Provenance of it");
  await searchOwn(t, a1, '?_type=Patient,Practitioner,Encounter,Observation,Provenance&_count=1000', [a1.res.patient, a1.res.provenance]);

  // POST _search takes the same parameters as a form body.
  const form = await send(app, {
    method: 'POST',
    url: `${FHIR}/Patient/_search`,
    headers: { ...a1.headers, 'content-type': 'application/x-www-form-urlencoded' },
    payload: `_id=${a2Patient}`,
  });
  t.equal(form.statusCode, 200, 'POST Patient/_search: 200');
  t.same(
    entries(jsonOf(form)).map((e) => e.resource?.id),
    [],
    "POST Patient/_search _id=<A2's>: no match",
  );
});

t.test("_include and _revinclude bring only A1's own resources", async (t) => {
  // A1's Observation references A2's Patient: the include must not bring it.
  const inc = await searchOwn(t, a1, 'Observation?_include=Observation:subject&_count=1000', [a1.res.observation, a1CrossObs]);
  t.ok(inc.included.includes(a1.res.patient), "_include brings A1's own Patient (the control)");
  t.notOk(inc.included.includes(a2.res.patient), "_include does not bring A2's Patient");

  // A2's Observation references A1's Patient: the revinclude must not bring it.
  const rev = await searchOwn(t, a1, 'Patient?_revinclude=Observation:subject&_count=1000', [a1.res.patient]);
  t.ok(rev.included.includes(a1.res.observation), "_revinclude brings A1's own Observation (the control)");
  t.notOk(rev.included.includes(a2CrossObs), "_revinclude does not bring A2's Observation about A1's Patient");

  // A2's Provenance targets A1's Observation: the revinclude must not bring it.
  const prov = await searchOwn(t, a1, 'Observation?_revinclude=Provenance:target&_count=1000', [a1.res.observation]);
  t.ok(prov.included.includes(a1.res.provenance), "_revinclude brings A1's own Provenance (the control)");
  t.notOk(prov.included.includes(a2CrossProv), "_revinclude does not bring A2's Provenance of A1's Observation");

  await searchOwn(t, a1, 'Encounter?_include=Encounter:practitioner&_include=Encounter:subject&_revinclude=Observation:encounter', [
    a1.res.encounter,
  ]);
  await searchOwn(t, a1, 'Provenance?_include=Provenance:target&_include:iterate=Observation:subject', [a1.res.provenance]);
});

t.test("chains and _has do not look through other users' resources", async (t) => {
  // The controls: the same searches on A1's own data find it.
  await searchOwn(t, a1, 'Observation?subject:Patient.name=Isolation-A1', [a1.res.observation]);
  await searchOwn(t, a1, `Patient?_has:Observation:patient:code=${CODE_SYSTEM}|code-a1`, [a1.res.patient]);
  // A1's Observation references A2's Patient: a chain through it must not match.
  await searchOwn(t, a1, 'Observation?subject:Patient.name=Isolation-A2', []);
  await searchOwn(t, a1, `Observation?patient.identifier=${PATIENT_ID_SYSTEM}|a2`, []);
  await searchOwn(t, a1, 'Observation?patient.name=Isolation-B1', []);
  await searchOwn(t, a1, 'Encounter?practitioner.name=Doctor-a2', []);
  // A2's Observation (code only A2 uses) references A1's Patient: _has must not see it.
  await searchOwn(t, a1, `Patient?_has:Observation:patient:code=${CODE_SYSTEM}|code-a2`, []);
  await searchOwn(t, a1, `Patient?_has:Observation:patient:code=${CODE_SYSTEM}|code-b1`, []);
  await searchOwn(t, a1, `Observation?_has:Provenance:target:agent=${a2.res.practitioner}`, []);
});

// --- History -------------------------------------------------------------------------------------

t.test("history: instance, type and system show only A1's own versions", async (t) => {
  for (const typed of [a2.res.patient, b1.res.patient, a2.res.observation]) {
    const res = await request('GET', `${FHIR}/${typed}/_history`, a1.headers);
    const found = entries(jsonOf(res));
    t.ok(res.statusCode === 404 || (res.statusCode === 200 && found.length === 0), `${typed}/_history as a1: 404 or empty (got ${short(res)})`);
  }
  for (const path of ['Patient/_history', 'Observation/_history', '_history']) {
    const res = await request('GET', `${FHIR}/${path}?_count=1000`, a1.headers);
    t.equal(res.statusCode, 200, `${path}: 200`);
    const found = entries(jsonOf(res));
    t.ok(found.length > 0, `${path}: has A1's own versions (the control)`);
    // A deleted version has no resource, so it counts as a stray: A1 deleted nothing.
    t.same(
      strays(
        found.map((e) => e.resource),
        'a1',
      ),
      [],
      `${path}: nothing but A1's own versions`,
    );
  }
});

// --- Compartments --------------------------------------------------------------------------------

t.test("compartment searches on another user's Patient: empty or 404", async (t) => {
  const targets = [
    { path: `${a2.res.patient}/Observation`, mayHold: [a1CrossObs] },
    { path: `${a2.res.patient}/Encounter`, mayHold: [] },
    { path: `${b1.res.patient}/Observation`, mayHold: [] },
    { path: `${b1.res.patient}/Provenance`, mayHold: [] },
  ];
  for (const { path, mayHold } of targets) {
    const res = await request('GET', `${FHIR}/${path}`, a1.headers);
    t.ok(res.statusCode === 200 || res.statusCode === 404, `${path}: 200 or 404 (got ${short(res)})`);
    const found = entries(jsonOf(res)).map((e) => e.resource);
    t.same(strays(found, 'a1'), [], `${path}: nothing but A1's own resources`);
    // A1's own Observation about A2's Patient is in that compartment; nothing else may be.
    const extra = found.map((r) => `${r.resourceType}/${r.id}`).filter((x) => !mayHold.includes(x));
    t.same(extra, [], `${path}: empty (but for A1's own reference into it)`);
  }
});

// --- App-level access ----------------------------------------------------------------------------

t.test("app-level requests see all of their app's users and nothing of the other app", async (t) => {
  const cases = [
    { tenant: tenantA, users: [a1, a2], others: [b1, b2] },
    { tenant: tenantB, users: [b1, b2], others: [a1, a2] },
  ];
  for (const { tenant, users, others } of cases) {
    const headers = asApp(tenant, 'client');
    const mine = new Set(users.map((u) => u.tag));
    for (const q of [
      'Patient?_count=1000',
      'Observation?_count=1000&_include=Observation:subject&_revinclude=Provenance:target',
      '?_type=Encounter,Practitioner,Provenance&_count=1000',
    ]) {
      const r = await searchPages(headers, q);
      t.equal(r.status, 200, `${tenant.name} ${q}: 200`);
      const foreign = [...r.matches, ...r.included].filter((res) => !mine.has(ownerOf(res)));
      t.same(typedIds(foreign), [], `${tenant.name} ${q}: nothing but its own users' resources`);
    }
    const patients = typedIds((await searchPages(headers, 'Patient?_count=1000')).matches);
    for (const u of users) t.ok(patients.includes(u.res.patient) && patients.includes(u.res.fixed), `${tenant.name} sees ${u.tag}'s Patients`);
    for (const u of users) {
      const read = await request('GET', `${FHIR}/${u.res.observation}`, headers);
      t.equal(read.statusCode, 200, `${tenant.name} reads ${u.tag}'s Observation`);
    }
    for (const o of others) {
      for (const typed of [o.res.patient, o.res.observation, o.res.provenance]) {
        const read = await request('GET', `${FHIR}/${typed}`, headers);
        t.equal(read.statusCode, 404, `${tenant.name} reads ${o.tag}'s ${typed}: 404 (got ${short(read)})`);
      }
    }
    const history = jsonOf(await request('GET', `${FHIR}/_history?_count=1000`, headers));
    const foreignVersions = entries(history).filter((e) => e.resource && !mine.has(ownerOf(e.resource)));
    t.same(
      foreignVersions.map((e) => e.fullUrl),
      [],
      `${tenant.name} system history: nothing of the other app`,
    );
  }

  // App A's credentials acting as A2: A2's data, not A1's.
  const asA2 = asApp(tenantA, a2.userId);
  t.equal((await request('GET', `${FHIR}/${a2.res.patient}`, asA2)).statusCode, 200, "app A acting as A2 reads A2's Patient");
  t.equal((await request('GET', `${FHIR}/${a1.res.patient}`, asA2)).statusCode, 404, "app A acting as A2 does not read A1's Patient");
  const asB1 = await request('GET', `${FHIR}/${b1.res.patient}`, asApp(tenantA, b1.userId));
  t.equal(asB1.statusCode, 401, "app A's credentials acting as B1: 401");
});

// --- Batches and transactions --------------------------------------------------------------------

t.test('a batch reads only what A1 may read', async (t) => {
  const res = await request('POST', FHIR, a1.headers, {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [
      { request: { method: 'GET', url: a2.res.patient } },
      { request: { method: 'GET', url: `${a2.res.patient}/_history/1` } },
      { request: { method: 'GET', url: b1.res.observation } },
      { request: { method: 'GET', url: `Observation?patient=${idOf(a2.res.patient)}` } },
      { request: { method: 'GET', url: `Patient?_id=${idOf(a2.res.patient)}` } },
    ],
  });
  t.equal(res.statusCode, 200, `batch: 200 (${short(res)})`);
  const out = entries(jsonOf(res));
  t.same(
    out.slice(0, 3).map((e) => e.response?.status?.slice(0, 3)),
    ['404', '404', '404'],
    "reads of A2's and B1's resources: 404 each",
  );
  const obsSearch = entries(out[3]?.resource).map((e) => e.resource);
  t.same(strays(obsSearch, 'a1'), [], "a search entry about A2's Patient: nothing but A1's own");
  t.same(entries(out[4]?.resource), [], "a search entry for A2's Patient id: empty");
});

/** Posts a transaction as A1; the secure answer is any status but a server error. */
async function transactionAsA1(t: Test, what: string, entry: Json[]): Promise<LightMyRequestResponse> {
  const res = await request('POST', FHIR, a1.headers, { resourceType: 'Bundle', type: 'transaction', entry });
  t.comment(`transaction ${what} as a1 answered ${short(res)}`);
  t.ok(res.statusCode < 500, `transaction ${what}: no server error (got ${res.statusCode})`);
  return res;
}

t.test("transactions from A1 cannot change A2's or B1's data", async (t) => {
  const a2Obs = before.get(`a2/${a2.res.observation}`)!;
  await transactionAsA1(t, "PUT of A2's Observation", [
    {
      resource: { ...a2Obs, meta: tagged('a1'), status: 'amended', valueString: 'changed by a1' },
      request: { method: 'PUT', url: a2.res.observation },
    },
  ]);
  await unchanged(t, a2, a2.res.observation);

  await transactionAsA1(t, "DELETE of A2's Patient", [{ request: { method: 'DELETE', url: a2.res.patient } }]);
  await unchanged(t, a2, a2.res.patient);

  await transactionAsA1(t, "DELETE of B1's Observation", [{ request: { method: 'DELETE', url: b1.res.observation } }]);
  await unchanged(t, b1, b1.res.observation);

  await transactionAsA1(t, "conditional DELETE of A2's Patient", [
    { request: { method: 'DELETE', url: `Patient?identifier=${PATIENT_ID_SYSTEM}|a2` } },
  ]);
  await unchanged(t, a2, a2.res.patient);

  await transactionAsA1(t, "conditional PUT on A2's Observation identifier", [
    {
      resource: observation('a1', a1.res.patient, { meta: tagged('a1'), valueString: 'conditional by a1' }),
      request: { method: 'PUT', url: `Observation?identifier=${OBS_ID_SYSTEM}|a2` },
    },
  ]);
  await unchanged(t, a2, a2.res.observation);

  // A conditional reference must not resolve to A2's Patient: no match is a 412.
  const ref = await transactionAsA1(t, "POST with a conditional reference to A2's Patient", [
    {
      resource: observation('a1', `Patient?identifier=${PATIENT_ID_SYSTEM}|a2`, { meta: tagged('a1') }),
      request: { method: 'POST', url: 'Observation' },
    },
  ]);
  t.equal(ref.statusCode, 412, `a conditional reference to A2's Patient matches nothing: 412 (got ${short(ref)})`);
  t.notOk(ref.body.includes(a2.res.patient), "the answer does not name A2's Patient");
});

// --- Conditional and plain writes ----------------------------------------------------------------

/** A write as A1; the status is recorded, and anything but a server error passes here. */
async function writeAsA1(
  t: Test,
  method: InjectOptions['method'],
  target: string,
  payload?: object,
  headers: Headers = {},
): Promise<LightMyRequestResponse> {
  const res = await request(method, `${FHIR}/${target}`, { ...a1.headers, ...headers }, payload);
  t.comment(`${method} ${target} as a1 answered ${short(res)}`);
  t.ok(res.statusCode < 500, `${method} ${target}: no server error (got ${res.statusCode})`);
  return res;
}

t.test("conditional writes from A1 do not match A2's resources", async (t) => {
  await writeAsA1(
    t,
    'PUT',
    `Observation?identifier=${OBS_ID_SYSTEM}|a2`,
    observation('a1', a1.res.patient, { meta: tagged('a1'), valueString: 'conditional update by a1' }),
  );
  await unchanged(t, a2, a2.res.observation);

  await writeAsA1(t, 'DELETE', `Patient?identifier=${PATIENT_ID_SYSTEM}|a2`);
  await unchanged(t, a2, a2.res.patient);

  await writeAsA1(t, 'DELETE', `Observation?code=${CODE_SYSTEM}|code-b1`);
  await unchanged(t, b1, b1.res.observation);

  // If-None-Exist matching A2's Patient would answer 200 with it: it must create A1's own instead.
  const ine = await writeAsA1(
    t,
    'POST',
    'Patient',
    { resourceType: 'Patient', meta: tagged('a1'), name: [{ family: 'Isolation-A1-Conditional' }] },
    {
      'if-none-exist': `identifier=${PATIENT_ID_SYSTEM}|a2`,
    },
  );
  t.equal(ine.statusCode, 201, `If-None-Exist on A2's identifier finds nothing: 201 (got ${short(ine)})`);
  t.not(jsonOf(ine).id, idOf(a2.res.patient), "and it is not A2's Patient");
  t.equal(ownerOf(jsonOf(ine)), 'a1', "the answer holds A1's new Patient");
});

t.test("plain PUT, PATCH and DELETE from A1 on A2's and B1's ids leave their data alone", async (t) => {
  const a2Patient = before.get(`a2/${a2.res.patient}`)!;
  await writeAsA1(t, 'PUT', a2.res.patient, { ...a2Patient, meta: tagged('a1'), name: [{ family: 'Hijacked' }] });
  await unchanged(t, a2, a2.res.patient);

  await writeAsA1(t, 'PUT', a2.res.fixed, { resourceType: 'Patient', id: idOf(a2.res.fixed), meta: tagged('a1'), name: [{ family: 'Hijacked' }] });
  await unchanged(t, a2, a2.res.fixed);

  await writeAsA1(t, 'PUT', b1.res.patient, { ...before.get(`b1/${b1.res.patient}`)!, meta: tagged('a1'), name: [{ family: 'Hijacked' }] });
  await unchanged(t, b1, b1.res.patient);

  const patch = await send(app, {
    method: 'PATCH',
    url: `${FHIR}/${a2.res.patient}`,
    headers: { ...a1.headers, 'content-type': 'application/json-patch+json' },
    payload: [{ op: 'replace', path: '/name/0/family', value: 'Patched' }],
  });
  t.equal(patch.statusCode, 404, `PATCH A2's Patient as a1: 404 (got ${short(patch)})`);
  await unchanged(t, a2, a2.res.patient);

  for (const [victim, typed] of [
    [a2, a2.res.patient],
    [a2, a2.res.provenance],
    [b1, b1.res.patient],
    [b2, b2.res.encounter],
  ] as const) {
    await writeAsA1(t, 'DELETE', typed);
    await unchanged(t, victim, typed);
  }
});

t.test('answers to writes on ids A1 cannot see: no tombstone, and a 409 that does not ask for a retry', async (t) => {
  // A transaction DELETE of B1's Encounter id (never written in app A) writes nothing: the id stays unknown.
  await transactionAsA1(t, "DELETE of B1's Encounter", [{ request: { method: 'DELETE', url: b1.res.encounter } }]);
  t.equal((await request('GET', `${FHIR}/${b1.res.encounter}`, a1.headers)).statusCode, 404, "B1's id reads 404 in app A afterwards, not 410");
  // A PUT of A2's id (held in app A by A2): a conflict that says the id is taken.
  const a2Patient = before.get(`a2/${a2.res.patient}`)!;
  const put = await request('PUT', `${FHIR}/${a2.res.patient}`, a1.headers, { ...a2Patient, meta: tagged('a1') });
  t.equal(put.statusCode, 409);
  t.match(put.json().issue[0].diagnostics, /already in use/);
  await unchanged(t, a2, a2.res.patient);
});

t.test("a SearchParameter an app writes changes no other app's search (the registry is the server's)", async (t) => {
  const sp = {
    resourceType: 'SearchParameter',
    url: 'http://example.org/SearchParameter/patient-app-a-only',
    name: 'AppAOnly',
    status: 'active',
    description: 'Written by app A',
    code: 'app-a-only',
    base: ['Patient'],
    type: 'string',
    expression: 'Patient.name.family',
  };
  t.equal((await request('POST', `${FHIR}/SearchParameter`, asApp(tenantA, 'client'), sp)).statusCode, 201, 'stored, as any resource');
  for (const [who, headers] of [
    ['app A', asApp(tenantA, 'client')],
    ['b1', b1.headers],
  ] as const) {
    const res = await request('GET', `${FHIR}/Patient?app-a-only=x`, headers);
    t.equal(res.statusCode, 200);
    const outcome = (res.json().entry as Json[]).find((e) => (e.search as Json | undefined)?.mode === 'outcome');
    t.match(
      JSON.stringify(outcome?.resource),
      /has no search parameter .{0,2}app-a-only/,
      `${who}: the parameter is not searchable (ignored, with a warning)`,
    );
  }
});

// --- $reindex ------------------------------------------------------------------------------------

t.test('$reindex as a user: 403', async (t) => {
  for (const target of ['$reindex', 'Patient/$reindex']) {
    const res = await request('POST', `${FHIR}/${target}`, a1.headers);
    t.equal(res.statusCode, 403, `${target} with A1's token: 403 (got ${short(res)})`);
    const acting = await request('POST', `${FHIR}/${target}`, asApp(tenantA, a1.userId));
    t.equal(acting.statusCode, 403, `${target} with app A's credentials acting as A1: 403 (got ${short(acting)})`);
  }
});

// --- The victims' data, at the end ---------------------------------------------------------------

t.test('every resource of A2, B1 and B2 reads as before the attacks', async (t) => {
  for (const v of victims) {
    for (const typed of v.own) await unchanged(t, v, typed);
  }
});
