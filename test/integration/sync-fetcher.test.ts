/**
 * The sync's fetch side (src/sync/fetcher.ts) over real HTTP. Against the sandbox systems, with a
 * real sign-in: North Valley serves Patient/$everything (one query covering every type); Lakeside
 * is searched type by type, the Patient by read; a type not granted is refused without a request;
 * increments ask `_lastUpdated` only where it is listed; a cut-off query resumes from its kept
 * `next`; a 500 for a whole search costs that query only; learned plans are followed and expire.
 * Against a local server answering as the vendors do (ehr-behaviour.md, until the simulated
 * vendors exist): category fan-out with suppressed and unknown categories isolated, athena's
 * intent, Epic's CarePlan, OperationOutcome entries, Blue Button's `_count`, Oracle's `gt`, Epic's
 * expiring sessions, eCW's parameter combinations, MEDITECH's `_since`.
 */
import type { ConnectionRow } from '../../src/sync/run-types.ts';
import http from 'node:http';
import * as oauth from 'oauth4webapi';
import t, { type Test } from 'tap';
import type { Resource } from '@medplum/fhirtypes';
import { buildApp } from '../../src/app.ts';
import { clientForSystem, connectionSealKey, type SystemClient, type Tokens } from '../../src/connect/client.ts';
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
const app = await buildApp(
  testConfig(await testDatabase(t), { baseUrl: BASE, sandboxes: true, sandboxSystems: DEFS, fhirAuth: 'required', adminKey: ADMIN_KEY }),
  { logger: false },
);
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());
await app.sandboxesLoaded;
const patientsOf = (d: typeof NV) =>
  generateSystem({ seed: d.seed, patients: d.patients, idPrefix: d.idPrefix, systemName: d.title }).patients.filter((p) => p.personKey !== 'shared');
const { app: demo } = await app.auth.createApp({ name: 'Fetcher app', redirectUris: ['https://app.example/cb'] });
const admin = (path: string, body: object | undefined, system: { name: string }) =>
  fetch(`${BASE}/admin/sandbox/${system.name}/${path}`, {
    method: body ? 'PUT' : 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body && JSON.stringify(body),
  });

interface Connected {
  session: SourceSession;
  input: (o?: Partial<FetchInput>) => FetchInput;
}

/** A user connected to `system` as `person`, with a session to its system as the sync makes one. */
async function connect(t: Test, name: string, person: { username: string; password: string }, system: { directoryId: string }): Promise<Connected> {
  const user = (await app.auth.createUser(demo.id, name))!;
  const { access_token } = await app.auth.exchangeCode(demo, await app.auth.newCode(demo.id, user.id));
  const callback = await signIn(
    t,
    BASE,
    `${BASE}/connect/system/clinical/${system.directoryId}?client_id=${demo.clientId}&access_token=${access_token}`,
    person.username,
    person.password,
  );
  await get(callback.toString());
  const { rows } = await app.pg.query<Omit<ConnectionRow, 'app_id' | 'user_id'>>(
    'SELECT c.system_id, c.patient_id, c.scope, c.access_token_sealed, c.refresh_token_sealed, c.access_expires_at, s.name, s.resource_url, s.vendor FROM trb_connection c JOIN trb_system s ON s.id = c.system_id WHERE c.user_id = $1',
    [user.id],
  );
  const c = rows[0];
  const base = c.resource_url.replace(/\/+$/, '');
  const key = connectionSealKey(user.id, c.system_id);
  const sc = await clientForSystem(
    app.pg,
    app.vault,
    { id: c.system_id, name: c.name, resource_url: base, vendor: c.vendor },
    new URL(BASE).origin,
    () => app.clientKeys.load(),
    app.outbound.fetch,
    app.discovery,
  );
  const tokens: Tokens = {
    accessToken: app.vault.decrypt(c.access_token_sealed, key, 'connection-token'),
    refreshToken: c.refresh_token_sealed ? app.vault.decrypt(c.refresh_token_sealed, key, 'connection-token') : undefined,
    expiresAt: c.access_expires_at,
    scope: c.scope,
  };
  const session = new SourceSession(
    sc,
    tokens,
    async () => {},
    { attempts: 2, backoffMs: 10, timeoutMs: 10_000, concurrency: 4, ratePerSecond: 1000 },
    undefined,
    app.syncShared.sessions,
  );
  return {
    session,
    input: (o = {}) => ({
      session,
      pool: app.pg,
      capabilities: app.syncShared.capabilities,
      systemId: c.system_id,
      base,
      patientId: c.patient_id!,
      grantedScope: c.scope,
      mode: () => 'full',
      progress: new Map(),
      ...o,
    }),
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
  t.same(
    done.map((e) => e.query),
    ['$everything'],
    'one query',
  );
  t.ok(done[0].full, 'a full fetch');
  t.ok(done[0].covers.includes('Patient') && done[0].covers.includes('Observation'), 'it covers the types');
  for (const type of ['Patient', 'Observation', 'Condition', 'Encounter', 'Immunization', 'MedicationRequest'])
    t.equal(got.count(type), sourceCount(person, type), `${type}: as many as the source has`);
  const pages = got.of('page');
  t.ok(pages.length > 1, `several pages (${pages.length})`);
  t.ok(pages.slice(0, -1).every((p) => p.next) && !pages.at(-1)!.next, 'each page but the last names its next');
  t.same(got.of('failed'), [], 'nothing failed');
  t.ok(c.session.requests - before <= pages.length + 1, `a request per page, and the CapabilityStatement (${c.session.requests - before})`);
  const { rows } = await app.pg.query('SELECT full_count FROM trb_sync_query_plan WHERE system_id = $1 AND res_type = $2', [
    NV.directoryId,
    '$everything',
  ]);
  t.equal(
    rows[0]?.full_count,
    got.events.filter((e) => e.kind === 'page').reduce((n, e) => n + (e.kind === 'page' ? e.resources.length : 0), 0),
    'the full fetch is remembered by its size',
  );
});

t.test('Lakeside: the Patient by read, then a search per type, in order', async (t) => {
  const person = patientsOf(LS)[0];
  const c = await connect(t, 'ls-a', person, LS);
  const got = await drain(c.input());
  const done = got.of('query-done').map((e) => e.query);
  t.equal(done[0], 'Patient', 'the Patient first');
  t.ok(
    done.indexOf('Encounter') < done.indexOf('Observation') && done.indexOf('Observation') < done.indexOf('DiagnosticReport'),
    'what is referred to first',
  );
  for (const type of ['Patient', 'Observation', 'Condition', 'Encounter', 'Immunization', 'DiagnosticReport'])
    t.equal(got.count(type), sourceCount(person, type), `${type}: as many as the source has`);
  t.same([got.of('failed'), got.of('refused')], [[], []], 'nothing failed or refused');
  t.ok(
    got.of('query-done').every((e) => e.full && e.covers.length === 1),
    'full fetches, one type each',
  );
});

let lakeside: Connected;
t.test('increments: _lastUpdated where listed, nothing where mode says skip', async (t) => {
  lakeside = await connect(t, 'ls-b', patientsOf(LS)[1], LS);
  const since = new Date(Date.now() + 60_000).toISOString();
  const progress = new Map<string, QueryProgress>([
    ['Observation', { since }],
    ['Condition', { since }],
  ]);
  const got = await drain(lakeside.input({ progress, mode: (type) => (type === 'Observation' || type === 'Condition' ? 'increment' : 'skip') }));
  const done = got.of('query-done');
  t.same(done.map((e) => e.query).sort(), ['Condition', 'Observation'], 'only the types the mode wants');
  t.ok(
    done.every((e) => !e.full),
    'increments, not full fetches',
  );
  t.equal(got.count('Observation') + got.count('Condition'), 0, 'nothing changed after the checkpoint');
});

t.test('a type not granted is refused without a request', async (t) => {
  const got = await drain(lakeside.input({ grantedScope: 'launch/patient openid patient/Patient.read patient/Observation.rs' }));
  const refused = got.of('refused');
  t.ok(refused.length > 3, 'the other listed types are refused');
  t.ok(
    refused.every((e) => e.final && e.refusal.kind === 'not-granted' && e.refusal.status === 0),
    'as not granted, final, never asked',
  );
  t.same(
    got.of('query-done').map((e) => e.query),
    ['Patient', 'Observation'],
    'what is granted is fetched',
  );
});

t.test('small pages; a cut-off query resumes from its kept next link; a refused one starts again', async (t) => {
  // The page size the system takes, as if learned: 5.
  await saveLearned(app.pg, LS.directoryId, '*', { working: [], refused: {}, pageSize: 5 });
  const only =
    (type: string) =>
    (x: string): 'full' | 'skip' =>
      x === type ? 'full' : 'skip';
  const first = await drain(lakeside.input({ mode: only('Observation') }));
  const pages = first.of('page');
  t.ok(pages.length > 2, `Observation in pages of 5 (${pages.length} pages)`);
  t.ok(pages.every((p) => p.resources.length <= 5));
  const kept = pages[1].next!;
  const resumed = await drain(lakeside.input({ mode: only('Observation'), progress: new Map([['Observation', { next: kept }]]) }));
  t.equal(resumed.count('Observation'), first.count('Observation') - 10, 'the resumed query took what follows its kept link only');
  t.equal(resumed.of('query-done').length, 1, 'and finished');
  const bad = await drain(
    lakeside.input({
      mode: only('Observation'),
      progress: new Map([['Observation', { next: `${lakeside.input().base}/Observation?_page=zzz&bogus=1` }]]),
    }),
  );
  t.equal(bad.count('Observation'), first.count('Observation'), 'a kept link the system refuses: the query starts again, whole');
  const away = await drain(
    lakeside.input({ mode: only('Observation'), progress: new Map([['Observation', { next: `http://elsewhere.example/Observation?x=1` }]]) }),
  );
  t.equal(away.count('Observation'), first.count('Observation'), 'a kept link on another origin is never asked: the query starts again');
  t.same([bad.of('failed'), away.of('failed')], [[], []]);
  await app.pg.query(`DELETE FROM trb_sync_query_plan WHERE res_type = '*'`);
});

t.test('a learned plan: straight to the variants that work; a type refused for good is not asked', async (t) => {
  const person = patientsOf(LS)[1];
  const cats = (c: string) =>
    person.resources.filter(
      (r) => r.resourceType === 'Observation' && JSON.stringify((r as { category?: unknown }).category ?? []).includes(`"${c}"`),
    ).length;
  await saveLearned(app.pg, LS.directoryId, 'Observation', {
    working: ['Observation?category=laboratory', 'Observation?category=vital-signs'],
    refused: { Observation: { kind: 'missing-parameter', status: 400, diagnostics: 'as if' } },
  });
  await saveLearned(app.pg, LS.directoryId, 'Condition', {
    working: [],
    refused: { Condition: { kind: 'not-offered', status: 404, diagnostics: 'as if' } },
  });
  const before = lakeside.session.requests;
  const got = await drain(lakeside.input({ mode: (x) => (x === 'Observation' || x === 'Condition' ? 'full' : 'skip') }));
  t.same(
    got.of('query-done').map((e) => e.query),
    ['Observation?category=laboratory', 'Observation?category=vital-signs'],
    'the learned variants, each its own query',
  );
  t.ok(got.of('query-done').every((e) => e.covers[0] === 'Observation'));
  t.equal(got.count('Observation'), cats('laboratory') + cats('vital-signs'), 'what those categories hold');
  t.ok(cats('laboratory') > 0 && cats('vital-signs') > 0);
  t.match(
    got.of('refused'),
    [{ type: 'Condition', query: 'Condition', final: true, refusal: { kind: 'not-offered' } }],
    'the remembered refusal, said again',
  );
  t.equal(
    lakeside.session.requests - before,
    got.of('page').length,
    `a request per page of the variants (${lakeside.session.requests - before}); none for Condition`,
  );
  await app.pg.query(`DELETE FROM trb_sync_query_plan WHERE system_id = $1`, [LS.directoryId]);
});

t.test('a learned plan older than 7 days is learned again', async (t) => {
  await saveLearned(app.pg, LS.directoryId, 'Condition', {
    working: [],
    refused: { Condition: { kind: 'not-offered', status: 404, diagnostics: 'as if' } },
    learnedAt: new Date(Date.now() - 8 * 86_400_000),
  });
  const got = await drain(lakeside.input({ mode: (x) => (x === 'Condition' ? 'full' : 'skip') }));
  t.same(
    got.of('query-done').map((e) => e.query),
    ['Condition'],
    'asked again, plainly',
  );
  t.same(got.of('refused'), []);
  await app.pg.query(`DELETE FROM trb_sync_query_plan WHERE system_id = $1`, [LS.directoryId]);
});

t.test('a whole-search 500 costs that query only', async (t) => {
  // The CapabilityStatement is cached; the Patient read and the first search fail twice (the session's attempts).
  await admin('faults', { fail: { count: 4, status: 500 } }, LS);
  const got = await drain(lakeside.input());
  const failed = got.of('failed');
  t.same(
    failed.map((e) => e.query),
    ['Patient', 'Encounter'],
    'the two queries that met the 500s failed',
  );
  t.ok(failed[1].covers.includes('Encounter') && /500/.test(failed[1].error), 'naming what they cover and why');
  t.ok(
    got.of('query-done').some((e) => e.query === 'Observation'),
    'the others went on',
  );
});

// ---------------------------------------------------------------------------------------------
// A local server answering as the vendors do (the shapes of ehr-behaviour.md, each noted), for
// what the two sandboxes never refuse: fan-out, suppressed categories, `gt` refused, expired
// sessions, a `_count` too large, OperationOutcome entries in a 200, a whole-search 500.
// ---------------------------------------------------------------------------------------------
const oo = (status: number, code: string, diagnostics: string, vendorCode?: string, severity = 'error') => ({
  status,
  body: {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity,
        code,
        diagnostics,
        ...(vendorCode ? { details: { coding: [{ system: 'urn:oid:1.2.840.114350.1.13.0.1.7.2.657369', code: vendorCode }] } } : {}),
      },
    ],
  },
});
const hits: string[] = [];
/** `expireSessions`: every cached session is gone; `expireNext`: so many next session look-ups fail. */
const vendor = { expireSessions: false, expireNext: 0, sessions: new Map<string, { items: Resource[]; at: number }>() };
const vport = await freePort();
const VBASE = `http://127.0.0.1:${vport}/api/FHIR/R4`;
const item = (type: string, id: string, extra: object = {}) => ({ resourceType: type, id, ...extra }) as Resource;
/** A bundle of `items` in pages of `size`, its next link a cached session (Epic, §1 "_count, paging"). */
function paged(type: string, items: Resource[], size: number, extra: object[] = []) {
  const id = `s${vendor.sessions.size + 1}`;
  vendor.sessions.set(id, { items, at: 0 });
  return page(type, id, 0, size, extra);
}
function page(type: string, id: string, at: number, size: number, extra: object[] = []) {
  const s = vendor.sessions.get(id)!;
  const slice = s.items.slice(at, at + size);
  const more = at + size < s.items.length;
  return {
    status: 200,
    body: {
      resourceType: 'Bundle',
      type: 'searchset',
      total: slice.length, // Epic's wrong total (§1 "Bundle.total")
      link: [
        { relation: 'self', url: `${VBASE}/${type}` },
        ...(more ? [{ relation: 'next', url: `${VBASE}/${type}?sessionID=${id}-${at + size}-${size}` }] : []),
      ],
      entry: [...slice.map((r) => ({ fullUrl: `${VBASE}/${type}/${r.id}`, resource: r, search: { mode: 'match' } })), ...extra],
    },
  };
}
const obs = (cat: string, n: number) =>
  Array.from({ length: n }, (_, i) => item('Observation', `${cat}-${i}`, { status: 'final', category: [{ coding: [{ code: cat }] }] }));
function answer(u: URL): { status: number; body?: unknown; html?: string } {
  const p = u.pathname.slice(new URL(VBASE).pathname.length);
  const q = u.searchParams;
  hits.push(`${p}${u.search}`);
  const count = Number(q.get('_count') ?? 10);
  const session = q.get('sessionID');
  if (session) {
    const [id, at, size] = session.split('-');
    const expireOne = vendor.expireNext > 0 && vendor.expireNext--;
    if (vendor.expireSessions || expireOne || !vendor.sessions.has(id))
      return oo(400, 'processing', 'Session ID for cached search results has expired.', '4113', 'fatal'); // §1 4113
    return page(p.slice(1), id, Number(at), Number(size));
  }
  switch (p) {
    case '/metadata': {
      const r = (type: string, params: string[]) => ({ type, searchParam: params.map((name) => ({ name })) });
      return {
        status: 200,
        body: {
          resourceType: 'CapabilityStatement',
          rest: [
            {
              mode: 'server',
              resource: [
                r('Patient', ['_id']),
                r('Observation', ['patient', 'category', 'code']),
                r('CarePlan', ['patient', 'category']),
                r('MedicationRequest', ['patient', 'intent', '_lastUpdated']),
                r('Condition', ['patient']),
                r('DocumentReference', ['patient', '_lastupdated']),
                r('Coverage', ['beneficiary']),
                r('Procedure', ['patient']),
                r('Goal', ['patient']),
                r('CareTeam', ['patient', 'status']),
              ],
            },
          ],
        },
      };
    }
    case '/Patient/p1':
      return { status: 200, body: item('Patient', 'p1') };
    case '/Observation': {
      const cat = q.get('category');
      if (!cat && !q.get('code')) return oo(400, 'required', 'Must have either code or category.', '59108'); // §1 59108
      if (cat === 'laboratory') return paged('Observation', obs('laboratory', 7), Math.min(count, 100));
      if (cat === 'vital-signs') return paged('Observation', obs('vital-signs', 3), Math.min(count, 100));
      if (
        [
          'social-history',
          'survey',
          'core-characteristics',
          'LDA',
          'sdoh',
          'imaging',
          'functional-mental-status',
          'periodontal',
          'labor-delivery',
          'newborn-delivery',
          'obstetrics-gynecology',
        ].includes(cat!)
      )
        return oo(400, 'suppressed', 'Client not authorized for this category.', '59204', 'warning'); // §1 suppressed
      return oo(400, 'value', 'Invalid category', '59109'); // §1 59109
    }
    case '/CarePlan': {
      const cat = q.get('category');
      if (!cat) return oo(400, 'business-rule', 'A category is needed to search CarePlan.', '59159'); // §1 CarePlan
      if (cat === '38717003') return paged('CarePlan', [item('CarePlan', 'cp1', { status: 'active', intent: 'plan' })], count);
      return oo(400, cat === 'assess-plan' ? 'suppressed' : 'value', 'Not for this client.', cat === 'assess-plan' ? '59204' : '59109');
    }
    case '/MedicationRequest': {
      if (!q.get('intent')) return oo(403, 'forbidden', 'one of the required parameter combinations [[patient,intent],[_id]] was not provided'); // §3 athena
      if (q.get('_lastUpdated')?.startsWith('gt')) return oo(400, 'value', "The prefix 'gt' is not supported for _lastUpdated; use 'le' or 'ge'."); // §2 Oracle
      return paged('MedicationRequest', [item('MedicationRequest', 'm1', { status: 'active', intent: 'order' })], count);
    }
    case '/Condition': // §1 "Sub-type suppression inside 200s"
      return paged('Condition', [item('Condition', 'c1')], count, [
        {
          fullUrl: 'urn:uuid:5a1e1f0e-0000-4000-8000-000000000001',
          resource: {
            resourceType: 'OperationOutcome',
            issue: [{ severity: 'warning', code: 'suppressed', diagnostics: 'Client not authorized for Condition - Encounter Diagnosis.' }],
          },
          search: { mode: 'outcome' },
        },
      ]);
    case '/Coverage': // §9 Blue Button: _count over 50 is a 400
      if (count > 50) return oo(400, 'invalid', 'Invalid request: the page size asked is too large.');
      return paged('Coverage', [item('Coverage', 'cov1')], count);
    case '/CareTeam': // §5 eCW: only the declared combinations, and _count breaks them
      if (!q.get('status') || q.has('_count'))
        return oo(400, 'processing', `Invalid request: Does not know how to handle get operation with parameter [${[...q.keys()].sort().join(',')}]`);
      return paged('CareTeam', [item('CareTeam', 'ct1')], count);
    case '/Procedure': // §2 Oracle whole-search 500
      return oo(500, 'required', 'A resource of the search lacks its required status.', undefined, 'fatal');
    case '/DocumentReference':
      return { status: 404, html: '<!DOCTYPE html><html><head><title>404 - File or directory not found.</title></head><body></body></html>' }; // §1 404 IIS page
    default:
      return { status: 403 }; // §1 unscoped types: 403, no body
  }
}
const vserver = http.createServer((req, res) => {
  const a = answer(new URL(req.url!, `http://127.0.0.1:${vport}`));
  if (a.html) res.writeHead(a.status, { 'content-type': 'text/html' }).end(a.html);
  else if (a.body) res.writeHead(a.status, { 'content-type': 'application/fhir+json' }).end(JSON.stringify(a.body));
  else res.writeHead(a.status).end();
});
await new Promise<void>((r) => vserver.listen(vport, '127.0.0.1', r));
t.teardown(() => new Promise<void>((r) => vserver.close(() => r())));
await app.pg.query(
  `INSERT INTO trb_system (id, url_normalized, resource_url, name, content_sha256) VALUES ('local-vendor', $1, $1, 'Local vendor', 'x'), ('local-ecw', $1 || '?ecw', $1, 'Local eCW', 'x')`,
  [VBASE.toLowerCase()],
);
const vsc: SystemClient = {
  fhirBase: VBASE,
  as: { issuer: VBASE },
  client: { client_id: 'c' },
  auth: oauth.None(),
  scope: '',
  options: { [oauth.allowInsecureRequests]: true, [oauth.customFetch]: app.outbound.fetch },
};
const vsession = () =>
  new SourceSession(
    vsc,
    { accessToken: 'a', expiresAt: null, scope: '' },
    async () => {},
    { attempts: 2, backoffMs: 5, timeoutMs: 5000, concurrency: 4, ratePerSecond: 1000 },
    undefined,
    app.syncShared.sessions,
  );
const vinput = (o: Partial<FetchInput> = {}): FetchInput => ({
  session: vsession(),
  pool: app.pg,
  capabilities: app.syncShared.capabilities,
  systemId: 'local-vendor',
  base: VBASE,
  patientId: 'p1',
  grantedScope: 'patient/*.read',
  mode: (x) => (x === 'CareTeam' ? 'skip' : 'full'),
  progress: new Map(),
  ...o,
});

t.test('vendor answers: fan-out, each refusal isolated, learned for the next run', async (t) => {
  hits.length = 0;
  const got = await drain(vinput());
  t.equal(got.count('Observation'), 10, 'laboratory (7, over pages) and vital-signs (3)');
  t.equal(got.count('CarePlan'), 1, 'CarePlan by its longitudinal category');
  t.equal(got.count('MedicationRequest'), 1, 'MedicationRequest with every intent at once');
  t.equal(got.count('Condition'), 1, 'Condition: the match, not the OperationOutcome entry');
  t.match(got.of('warning'), [{ query: 'Condition', issue: { code: 'suppressed' } }], 'which is a warning');
  t.equal(got.count('Coverage'), 1, 'Coverage by beneficiary, with a smaller page');
  t.ok(
    hits.some((h) => h.startsWith('/Coverage?beneficiary=p1&_count=50')),
    'after _count=100 was refused, 50',
  );
  const refused = got.of('refused');
  const final = refused.filter((e) => e.final).map((e) => [e.type, e.refusal.kind]);
  t.same(
    final.sort(),
    [
      ['DocumentReference', 'not-offered'],
      ['Goal', 'not-granted'],
    ],
    'only what cannot be had at all is final',
  );
  t.ok(
    refused.some((e) => e.query === 'Observation?category=survey' && !e.final && e.refusal.kind === 'not-granted'),
    'a suppressed category costs itself only',
  );
  t.ok(
    refused.some((e) => e.query === 'Observation?category=exam' && !e.final && e.refusal.kind === 'unsupported-value'),
    'an unknown category too',
  );
  t.notOk(
    refused.some((e) => e.query === 'Observation'),
    'the plain search refused for a missing parameter is no refusal: the variants answer it',
  );
  t.match(got.of('failed'), [{ query: 'Procedure', covers: ['Procedure'] }], 'a whole-search 500 costs that query');
  t.same(
    got
      .of('query-done')
      .filter((e) => e.query.startsWith('Observation'))
      .map((e) => e.query),
    ['Observation?category=laboratory', 'Observation?category=vital-signs'],
  );

  // The next run: straight to what works, nothing refused asked again.
  hits.length = 0;
  const again = await drain(vinput());
  t.equal(again.count('Observation') + again.count('CarePlan') + again.count('MedicationRequest'), 12, 'the same records');
  t.notOk(
    hits.some(
      (h) =>
        /^\/Observation\?patient=p1&_count/.test(h) ||
        h.includes('category=survey') ||
        h.includes('category=assess-plan') ||
        h.startsWith('/DocumentReference') ||
        h.startsWith('/MedicationRequest?patient=p1&_count'),
    ),
    'no refused query asked again',
  );
  t.ok(
    hits.some((h) => h.startsWith('/Coverage?beneficiary=p1&_count=50')) && !hits.some((h) => h.includes('_count=100') && h.startsWith('/Coverage')),
    'the page size learned',
  );
  t.match(
    again.of('refused').filter((e) => e.final),
    [{ type: 'Goal' }, { type: 'DocumentReference', refusal: { kind: 'not-offered' } }],
    'the lasting refusals, said again',
  );
});

t.test('vendor answers: gt refused, ge used and remembered; never for types not listing _lastUpdated', async (t) => {
  hits.length = 0;
  const since = '2026-01-01T00:00:00.000Z';
  const progress = new Map<string, QueryProgress>([
    ['MedicationRequest?intent=order,plan,proposal,option', { since }],
    ['Condition', { since }],
  ]);
  const got = await drain(vinput({ progress, mode: (x) => (x === 'MedicationRequest' || x === 'Condition' ? 'increment' : 'skip') }));
  t.ok(
    hits.some((h) => h.includes(`_lastUpdated=gt${encodeURIComponent(since)}`)) &&
      hits.some((h) => h.includes(`_lastUpdated=ge${encodeURIComponent(since)}`)),
    'gt, then ge',
  );
  t.ok(
    hits.filter((h) => h.startsWith('/Condition')).every((h) => !/lastupdated/i.test(h)),
    'Condition does not list it: not sent',
  );
  t.match(
    got.of('query-done').find((e) => e.query.startsWith('MedicationRequest')),
    { full: false },
    'still an increment',
  );
  hits.length = 0;
  await drain(vinput({ progress, mode: (x) => (x === 'MedicationRequest' ? 'increment' : 'skip') }));
  t.same(
    hits.filter((h) => h.startsWith('/MedicationRequest')).map((h) => /_lastUpdated=(..)/.exec(h)?.[1]),
    ['ge'],
    'the next run asks ge at once',
  );
});

t.test('vendor answers: an expired session restarts the query, twice at most', async (t) => {
  await app.pg.query(`DELETE FROM trb_sync_query_plan WHERE system_id = 'local-vendor' AND res_type = '*'`);
  await saveLearned(app.pg, 'local-vendor', '*', { working: [], refused: {}, pageSize: 2 });
  vendor.expireSessions = true;
  hits.length = 0;
  const got = await drain(vinput({ mode: (x) => (x === 'Observation' ? 'full' : 'skip') }));
  t.match(
    got.of('failed'),
    [{ query: 'Observation?category=laboratory', error: /expired/ }],
    'sessions that always expire: failed after the restarts',
  );
  t.equal(hits.filter((h) => h.includes('category=laboratory')).length, 3, 'the first page asked three times: once and two restarts');
  vendor.expireSessions = false;
  // A session that expires once: the query restarts and completes.
  vendor.expireNext = 1;
  hits.length = 0;
  const again = await drain(vinput({ mode: (x) => (x === 'Observation' ? 'full' : 'skip') }));
  t.same(again.of('failed'), [], 'nothing failed');
  t.equal(new Set(again.of('page').flatMap((p) => p.resources.map((r) => r.id))).size, 10, 'every Observation came');
  t.equal(hits.filter((h) => h.includes('category=laboratory')).length, 2, 'the laboratory query restarted once');
  await app.pg.query(`DELETE FROM trb_sync_query_plan WHERE system_id = 'local-vendor' AND res_type = '*'`);
});

t.test('vendor answers: a _count that breaks the combination is dropped, for the system', async (t) => {
  hits.length = 0;
  const got = await drain(vinput({ systemId: 'local-ecw', mode: (x) => (x === 'CareTeam' ? 'full' : 'skip') }));
  t.equal(got.count('CareTeam'), 1);
  t.same(got.of('failed'), []);
  t.same(
    hits.filter((h) => h.startsWith('/CareTeam')),
    [
      '/CareTeam?patient=p1&_count=100',
      '/CareTeam?patient=p1&status=active,proposed,suspended,inactive,entered-in-error&_count=100',
      '/CareTeam?patient=p1&status=active,proposed,suspended,inactive,entered-in-error',
    ],
    'plain, the statuses, then without _count',
  );
  const { rows } = await app.pg.query(`SELECT res_type, page_size, working FROM trb_sync_query_plan WHERE system_id = 'local-ecw' ORDER BY res_type`);
  t.same(
    rows.map((r) => [r.res_type, r.page_size]),
    [
      ['*', 0],
      ['CareTeam', null],
    ],
    'no _count at this system from now on',
  );
  t.same(rows[1].working, ['CareTeam?status=active,proposed,suspended,inactive,entered-in-error']);
});

t.test(
  '$everything: _since learned honoured where it filters (North Valley), ignored where matches dated before it come back (MEDITECH)',
  async (t) => {
    const modes: boolean[] = [];
    const mode = (x: string, incremental: boolean) => (x === '$everything' ? (modes.push(incremental), 'increment' as const) : ('full' as const));
    // A checkpoint a minute ahead: every record is older than it, so a system that honours _since returns none.
    const progress = new Map([['$everything', { since: new Date(Date.now() + 60_000).toISOString() }]]);
    const learned = async (d: { directoryId: string }) =>
      (await app.pg.query('SELECT since_honoured FROM trb_sync_query_plan WHERE system_id = $1 AND res_type = $2', [d.directoryId, '$everything']))
        .rows[0]?.since_honoured;

    const nv = await connect(t, 'nv-b', patientsOf(NV)[1], NV);
    await drain(nv.input({ mode: () => 'full' }));
    const none = await drain(nv.input({ mode, progress }));
    t.match(none.of('query-done'), [{ query: '$everything', full: false }]);
    t.equal(
      none.of('page').reduce((n, p) => n + p.resources.length, 0),
      0,
      'North Valley: nothing after the checkpoint',
    );
    t.equal(await learned(NV), true, '_since is honoured there');

    const MT = DEFS.find((d) => d.name === 'meditech');
    if (!MT) throw new Error('the MEDITECH-like vendor is not among the sandbox systems');
    const who = generateSystem({
      seed: MT.seed,
      patients: MT.patients,
      idPrefix: MT.idPrefix,
      systemName: MT.title,
      years: 1,
      ...(MT.generate ?? {}),
    } as Parameters<typeof generateSystem>[0]).patients.filter((p) => p.personKey !== 'shared')[0];
    const mt = await connect(t, 'mt-b', who, MT);
    await drain(mt.input({ mode: () => 'full' }));
    const all = await drain(mt.input({ mode, progress }));
    t.ok(all.of('page').reduce((n, p) => n + p.resources.length, 0) > 0, 'MEDITECH: the whole chart again, dated before the checkpoint');
    t.equal(await learned(MT), false, '_since is ignored there');
    modes.length = 0;
    await drain(mt.input({ mode, progress }));
    t.same(modes, [false], 'the next run is told $everything is not incremental there');
    await app.pg.query('DELETE FROM trb_sync_query_plan WHERE system_id = ANY($1)', [[NV.directoryId, MT.directoryId]]);
  },
);
