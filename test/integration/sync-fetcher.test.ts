/**
 * The sync's fetch side (src/sync/fetcher.ts) against the sandbox systems, over real HTTP with a
 * real sign-in: what it asks each system and what it makes of the answers. North Valley serves
 * Patient/$everything (one query covering every type); Lakeside is searched type by type, the
 * Patient by read; a type not granted is refused without a request; increments ask
 * `_lastUpdated` only where it is listed; a cut-off query resumes from its kept `next`; a 500 for
 * a whole search costs that query only; the learned plans are kept per system.
 */
import t, { type Test } from 'tap';
import type { Resource } from '@medplum/fhirtypes';
import { buildApp } from '../../src/app.ts';
import { clientForSystem, connectionSealKey, type Tokens } from '../../src/connect/client.ts';
import { generateSystem } from '../../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES } from '../../src/sandbox/systems.ts';
import { fetchConnection, type FetchEvent, type FetchInput, type QueryProgress } from '../../src/sync/fetcher.ts';
import { saveLearned } from '../../src/sync/plan.ts';
import { SourceSession } from '../../src/sync/session.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';
import { get, signIn } from './connect-support.ts';

const DEFS = DEFAULT_SANDBOXES.map((d) => ({ ...d, patients: 2 }));
const [NV, LS] = DEFS;
const port = await freePort();
const BASE = `http://127.0.0.1:${port}`;
const ADMIN_KEY = 'k'.repeat(40);
const app = await buildApp(testConfig(await testDatabase(t), { baseUrl: BASE, sandboxes: true, sandboxSystems: DEFS, fhirAuth: 'required', adminKey: ADMIN_KEY }), { logger: false });
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());
await app.sandboxesLoaded;
const patientsOf = (d: typeof NV) => generateSystem({ seed: d.seed, patients: d.patients, idPrefix: d.idPrefix, systemName: d.title }).patients.filter((p) => p.personKey !== 'shared');
const { app: demo } = await app.auth.createApp({ name: 'Fetcher app', redirectUris: ['https://app.example/cb'] });
const admin = (path: string, body: object | undefined, system: { name: string }) =>
  fetch(`${BASE}/admin/sandbox/${system.name}/${path}`, { method: body ? 'PUT' : 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body && JSON.stringify(body) });

interface Connected {
  session: SourceSession;
  input: (o?: Partial<FetchInput>) => FetchInput;
}

/** A user connected to `system` as `person`, with a session to its system as the sync makes one. */
async function connect(t: Test, name: string, person: { username: string; password: string }, system: { directoryId: string }): Promise<Connected> {
  const user = (await app.auth.createUser(demo.id, name))!;
  const { access_token } = await app.auth.exchangeCode(demo, await app.auth.newCode(demo.id, user.id));
  const callback = await signIn(t, BASE, `${BASE}/connect/system/clinical/${system.directoryId}?client_id=${demo.clientId}&access_token=${access_token}`, person.username, person.password);
  await get(callback.toString());
  const { rows } = await app.pg.query<{ system_id: string; patient_id: string; scope: string; access_token_sealed: Buffer; refresh_token_sealed: Buffer | null; access_expires_at: Date | null; name: string; resource_url: string; vendor: string | null }>(
    'SELECT c.system_id, c.patient_id, c.scope, c.access_token_sealed, c.refresh_token_sealed, c.access_expires_at, s.name, s.resource_url, s.vendor FROM trb_connection c JOIN trb_system s ON s.id = c.system_id WHERE c.user_id = $1',
    [user.id],
  );
  const c = rows[0];
  const base = c.resource_url.replace(/\/+$/, '');
  const key = connectionSealKey(user.id, c.system_id);
  const sc = await clientForSystem(app.pg, app.vault, { id: c.system_id, name: c.name, resource_url: base, vendor: c.vendor }, new URL(BASE).origin, () => app.clientKeys.load(), app.outbound.fetch);
  const tokens: Tokens = {
    accessToken: app.vault.decrypt(c.access_token_sealed, key, 'connection-token'),
    refreshToken: c.refresh_token_sealed ? app.vault.decrypt(c.refresh_token_sealed, key, 'connection-token') : undefined,
    expiresAt: c.access_expires_at,
    scope: c.scope,
  };
  const session = new SourceSession(sc, tokens, async () => {}, { attempts: 2, backoffMs: 10, timeoutMs: 10_000, concurrency: 4, ratePerSecond: 1000 });
  return {
    session,
    input: (o = {}) => ({ session, pool: app.pg, systemId: c.system_id, base, patientId: c.patient_id, grantedScope: c.scope, mode: () => 'full', progress: new Map(), ...o }),
  };
}

/** Every event of a fetch, and the resources its pages held, by type. */
async function drain(input: FetchInput) {
  const events: FetchEvent[] = [];
  const byType = new Map<string, Resource[]>();
  for await (const e of fetchConnection(input)) {
    events.push(e);
    if (e.kind === 'page') for (const r of e.resources) byType.set(r.resourceType, [...(byType.get(r.resourceType) ?? []), r]);
  }
  const count = (type: string) => byType.get(type)?.length ?? 0;
  const of = <K extends FetchEvent['kind']>(kind: K) => events.filter((e): e is Extract<FetchEvent, { kind: K }> => e.kind === kind);
  return { events, byType, count, of };
}

const sourceCount = (person: { resources: Resource[] }, type: string) => person.resources.filter((r) => r.resourceType === type).length;

t.test('North Valley: Patient/$everything, one query covering every type, page by page', async (t) => {
  const person = patientsOf(NV)[0];
  const c = await connect(t, 'nv-a', person, NV);
  const before = c.session.requests;
  const got = await drain(c.input());
  const done = got.of('query-done');
  t.same(done.map((e) => e.query), ['$everything'], 'one query');
  t.ok(done[0].full, 'a full fetch');
  t.ok(done[0].covers.includes('Patient') && done[0].covers.includes('Observation'), 'it covers the types');
  for (const type of ['Patient', 'Observation', 'Condition', 'Encounter', 'Immunization', 'MedicationRequest']) t.equal(got.count(type), sourceCount(person, type), `${type}: as many as the source has`);
  const pages = got.of('page');
  t.ok(pages.length > 1, `several pages (${pages.length})`);
  t.ok(pages.slice(0, -1).every((p) => p.next) && !pages.at(-1)!.next, 'each page but the last names its next');
  t.same(got.of('failed'), [], 'nothing failed');
  t.ok(c.session.requests - before <= pages.length + 1, `a request per page, and the CapabilityStatement (${c.session.requests - before})`);
  const { rows } = await app.pg.query('SELECT full_count FROM trb_sync_query_plan WHERE system_id = $1 AND res_type = $2', [NV.directoryId, '$everything']);
  t.equal(rows[0]?.full_count, got.events.filter((e) => e.kind === 'page').reduce((n, e) => n + (e.kind === 'page' ? e.resources.length : 0), 0), 'the full fetch is remembered by its size');
});

t.test('Lakeside: the Patient by read, then a search per type, in order', async (t) => {
  const person = patientsOf(LS)[0];
  const c = await connect(t, 'ls-a', person, LS);
  const got = await drain(c.input());
  const done = got.of('query-done').map((e) => e.query);
  t.equal(done[0], 'Patient', 'the Patient first');
  t.ok(done.indexOf('Encounter') < done.indexOf('Observation') && done.indexOf('Observation') < done.indexOf('DiagnosticReport'), 'what is referred to first');
  for (const type of ['Patient', 'Observation', 'Condition', 'Encounter', 'Immunization', 'DiagnosticReport']) t.equal(got.count(type), sourceCount(person, type), `${type}: as many as the source has`);
  t.same([got.of('failed'), got.of('refused')], [[], []], 'nothing failed or refused');
  t.ok(got.of('query-done').every((e) => e.full && e.covers.length === 1), 'full fetches, one type each');
});

let lakeside: Connected;
t.test('increments: _lastUpdated where listed, nothing where mode says skip', async (t) => {
  lakeside = await connect(t, 'ls-b', patientsOf(LS)[1], LS);
  const since = new Date(Date.now() + 60_000).toISOString();
  const progress = new Map<string, QueryProgress>([['Observation', { since }], ['Condition', { since }]]);
  const got = await drain(lakeside.input({ progress, mode: (type) => (type === 'Observation' || type === 'Condition' ? 'increment' : 'skip') }));
  const done = got.of('query-done');
  t.same(done.map((e) => e.query).sort(), ['Condition', 'Observation'], 'only the types the mode wants');
  t.ok(done.every((e) => !e.full), 'increments, not full fetches');
  t.equal(got.count('Observation') + got.count('Condition'), 0, 'nothing changed after the checkpoint');
});

t.test('a type not granted is refused without a request', async (t) => {
  const got = await drain(lakeside.input({ grantedScope: 'launch/patient openid patient/Patient.read patient/Observation.rs' }));
  const refused = got.of('refused');
  t.ok(refused.length > 3, 'the other listed types are refused');
  t.ok(refused.every((e) => e.final && e.refusal.kind === 'not-granted' && e.refusal.status === 0), 'as not granted, final, never asked');
  t.same(got.of('query-done').map((e) => e.query), ['Patient', 'Observation'], 'what is granted is fetched');
});

t.test('small pages; a cut-off query resumes from its kept next link; a refused one starts again', async (t) => {
  // The page size the system takes, as if learned: 5.
  await saveLearned(app.pg, LS.directoryId, '*', { working: [], refused: {}, pageSize: 5 });
  const only = (type: string) => (x: string): 'full' | 'skip' => (x === type ? 'full' : 'skip');
  const first = await drain(lakeside.input({ mode: only('Observation') }));
  const pages = first.of('page');
  t.ok(pages.length > 2, `Observation in pages of 5 (${pages.length} pages)`);
  t.ok(pages.every((p) => p.resources.length <= 5));
  const kept = pages[1].next!;
  const resumed = await drain(lakeside.input({ mode: only('Observation'), progress: new Map([['Observation', { next: kept }]]) }));
  t.equal(resumed.count('Observation'), first.count('Observation') - 10, 'the resumed query took what follows its kept link only');
  t.equal(resumed.of('query-done').length, 1, 'and finished');
  const bad = await drain(lakeside.input({ mode: only('Observation'), progress: new Map([['Observation', { next: `${lakeside.input().base}/Observation?_page=zzz&bogus=1` }]]) }));
  t.equal(bad.count('Observation'), first.count('Observation'), 'a kept link the system refuses: the query starts again, whole');
  const away = await drain(lakeside.input({ mode: only('Observation'), progress: new Map([['Observation', { next: `http://elsewhere.example/Observation?x=1` }]]) }));
  t.equal(away.count('Observation'), first.count('Observation'), 'a kept link on another origin is never asked: the query starts again');
  t.same([bad.of('failed'), away.of('failed')], [[], []]);
  await app.pg.query(`DELETE FROM trb_sync_query_plan WHERE res_type = '*'`);
});

t.test('a learned plan: straight to the variants that work; a type refused for good is not asked', async (t) => {
  const person = patientsOf(LS)[1];
  const cats = (c: string) => person.resources.filter((r) => r.resourceType === 'Observation' && JSON.stringify((r as { category?: unknown }).category ?? []).includes(`"${c}"`)).length;
  await saveLearned(app.pg, LS.directoryId, 'Observation', { working: ['Observation?category=laboratory', 'Observation?category=vital-signs'], refused: { Observation: { kind: 'missing-parameter', status: 400, diagnostics: 'as if' } } });
  await saveLearned(app.pg, LS.directoryId, 'Condition', { working: [], refused: { Condition: { kind: 'not-offered', status: 404, diagnostics: 'as if' } } });
  const before = lakeside.session.requests;
  const got = await drain(lakeside.input({ mode: (x) => (x === 'Observation' || x === 'Condition' ? 'full' : 'skip') }));
  t.same(got.of('query-done').map((e) => e.query), ['Observation?category=laboratory', 'Observation?category=vital-signs'], 'the learned variants, each its own query');
  t.ok(got.of('query-done').every((e) => e.covers[0] === 'Observation'));
  t.equal(got.count('Observation'), cats('laboratory') + cats('vital-signs'), 'what those categories hold');
  t.ok(cats('laboratory') > 0 && cats('vital-signs') > 0);
  t.match(got.of('refused'), [{ type: 'Condition', query: 'Condition', final: true, refusal: { kind: 'not-offered' } }], 'the remembered refusal, said again');
  t.equal(lakeside.session.requests - before, got.of('page').length, `a request per page of the variants (${lakeside.session.requests - before}); none for Condition`);
  await app.pg.query(`DELETE FROM trb_sync_query_plan WHERE system_id = $1`, [LS.directoryId]);
});

t.test('a learned plan older than 7 days is learned again', async (t) => {
  await saveLearned(app.pg, LS.directoryId, 'Condition', { working: [], refused: { Condition: { kind: 'not-offered', status: 404, diagnostics: 'as if' } }, learnedAt: new Date(Date.now() - 8 * 86_400_000) });
  const got = await drain(lakeside.input({ mode: (x) => (x === 'Condition' ? 'full' : 'skip') }));
  t.same(got.of('query-done').map((e) => e.query), ['Condition'], 'asked again, plainly');
  t.same(got.of('refused'), []);
  await app.pg.query(`DELETE FROM trb_sync_query_plan WHERE system_id = $1`, [LS.directoryId]);
});

t.test('a whole-search 500 costs that query only', async (t) => {
  // The CapabilityStatement is cached; the Patient read and the first search fail twice (the session's attempts).
  await admin('faults', { fail: { count: 4, status: 500 } }, LS);
  const got = await drain(lakeside.input());
  const failed = got.of('failed');
  t.same(failed.map((e) => e.query), ['Patient', 'Encounter'], 'the two queries that met the 500s failed');
  t.ok(failed[1].covers.includes('Encounter') && /500/.test(failed[1].error), 'naming what they cover and why');
  t.ok(got.of('query-done').some((e) => e.query === 'Observation'), 'the others went on');
});
