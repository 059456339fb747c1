/**
 * The outbound agent in the app, over real HTTP on loopback: a directory system whose base is on a
 * private address gives the app a clear error, without the address, and nothing is sent to it; the
 * sync follows `next` links only on the system's own origin; what a run records for the app (its
 * error, its issues) names no internal address. The health system is a small local FHIR server
 * (SMART configuration, token endpoint, searches) that the operator's allow-list names.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { buildApp } from '../../src/app.ts';
import { importDirectory } from '../../src/directory/importer.ts';
import { syncConnection } from '../../src/sync/run.ts';
import { syncDeps } from '../../plugins/sync.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';
import { Browser } from './connect-support.ts';

/** A FHIR server of one patient, whose Observation search pages to `nextUrl()` (set by each test). */
async function fhirServer() {
  const seen: string[] = [];
  let nextUrl = (): string | undefined => undefined;
  let failObservations = false;
  const s = http.createServer((req, res) => {
    seen.push(req.url!);
    const base = `http://127.0.0.1:${(s.address() as AddressInfo).port}/fhir`;
    const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/fhir+json' }).end(JSON.stringify(body));
    const path = req.url!.split('?')[0];
    if (path === '/fhir/.well-known/smart-configuration')
      return json(200, { authorization_endpoint: `${base}/authorize`, token_endpoint: `${base}/token` });
    if (path === '/fhir/token')
      return json(200, { access_token: 'remote-access', token_type: 'Bearer', expires_in: 3600, scope: 'patient/*.read', patient: 'p1' });
    if (path === '/fhir/metadata') {
      return json(200, {
        resourceType: 'CapabilityStatement',
        rest: [
          {
            mode: 'server',
            resource: [
              { type: 'Patient', searchParam: [{ name: '_id' }] },
              { type: 'Observation', searchParam: [{ name: 'patient' }] },
            ],
          },
        ],
      });
    }
    const meta = { lastUpdated: '2026-01-01T00:00:00Z' };
    if (path === '/fhir/Patient')
      return json(200, {
        resourceType: 'Bundle',
        type: 'searchset',
        entry: [{ resource: { resourceType: 'Patient', id: 'p1', meta }, search: { mode: 'match' } }],
      });
    if (path === '/fhir/Observation') {
      if (failObservations) return json(404, { resourceType: 'OperationOutcome' });
      const next = nextUrl();
      return json(200, {
        resourceType: 'Bundle',
        type: 'searchset',
        entry: [
          {
            resource: { resourceType: 'Observation', id: 'o1', meta, status: 'final', code: { text: 'Steps' }, subject: { reference: 'Patient/p1' } },
            search: { mode: 'match' },
          },
        ],
        link: next ? [{ relation: 'next', url: next }] : [],
      });
    }
    json(404, { resourceType: 'OperationOutcome' });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  return {
    port: (s.address() as AddressInfo).port,
    seen,
    pageTo: (f: () => string | undefined) => (nextUrl = f),
    failObservations: (on: boolean) => (failObservations = on),
  };
}

const ehr = await fhirServer();
const elsewhere = await fhirServer();
const port = await freePort();
const BASE = `http://127.0.0.1:${port}`;
// The operator allows the two local FHIR servers by host:port, and nothing else (no 127.0.0.1 at large).
const app = await buildApp(
  testConfig(await testDatabase(t), { baseUrl: BASE, fhirAuth: 'required', outboundAllow: [`127.0.0.1:${ehr.port}`, `127.0.0.1:${elsewhere.port}`] }),
  { logger: false },
);
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());

const EHR_BASE = `http://127.0.0.1:${ehr.port}/fhir`;
await importDirectory(
  app.pg,
  [{ name: 'local.csv', content: `id,url,name\nlocal-ehr,${EHR_BASE},Local EHR\nmoved-ehr,https://moved.example/fhir,Moved EHR\n` }],
  undefined,
  { allow: app.outbound.allow },
);
await app.pg.query(
  `INSERT INTO trb_client_registration (system_id, client_id, auth_method) VALUES ('local-ehr', 'tributary', 'none'), ('moved-ehr', 'tributary', 'none')`,
);
const { app: demo } = await app.auth.createApp({ name: 'Outbound app', redirectUris: ['https://app.example/cb'] });

async function userToken(name: string) {
  const user = (await app.auth.createUser(demo.id, name))!;
  const { access_token } = await app.auth.exchangeCode(demo, await app.auth.newCode(demo.id, user.id));
  return { user, token: access_token };
}
const connectUrl = (systemId: string, token: string) =>
  `${BASE}/connect/system/clinical/${systemId}?client_id=${demo.clientId}&access_token=${token}`;
const appRedirect = (res: Response) => {
  const u = new URL(res.headers.get('location')!);
  t.equal(`${u.origin}${u.pathname}`, 'https://app.example/cb', 'back at the app');
  return u.searchParams;
};
const api = async (token: string, path: string) => (await fetch(`${BASE}${path}`, { headers: { authorization: `Bearer ${token}` } })).json();

t.test('a directory system whose base is on a loopback name: the app hears why, without the address, and nothing is sent', async (t) => {
  // A row from before the import check (or a name whose DNS moved): localhost resolves to 127.0.0.1.
  await app.pg.query('UPDATE trb_system SET resource_url = $1 WHERE id = $2', [`http://localhost:${ehr.port}/fhir`, 'moved-ehr']);
  const before = ehr.seen.length;
  const { token } = await userToken('private-base');
  const params = appRedirect(await new Browser().get(connectUrl('moved-ehr', token)));
  t.equal(params.get('error'), 'server_error');
  const why = params.get('error_description')!;
  t.match(why, /^The health system at http:\/\/localhost:\d+\/fhir is on a private or local network address, which Tributary does not connect to\.$/);
  t.notMatch(why, '127.0.0.1', 'the resolved address is not said');
  t.equal(ehr.seen.length, before, 'not a request reached the server behind the name');
  t.equal((await app.pg.query("SELECT count(*)::int AS n FROM trb_connect_state WHERE system_id = 'moved-ehr'")).rows[0].n, 0, 'no dangling sign-in');
});

/** Connects a new user of the app to the local EHR through the connect flow; the user's token and connection id. */
async function connected(t: Test, name: string) {
  const { user, token } = await userToken(name);
  const browser = new Browser();
  const start = await browser.get(connectUrl('local-ehr', token));
  t.equal(start.status, 302);
  const authorize = new URL(start.headers.get('location')!);
  t.equal(`${authorize.origin}${authorize.pathname}`, `${EHR_BASE}/authorize`, 'sent to the EHR to sign in');
  // The EHR sends the person back with a code; Tributary exchanges it at the token endpoint (through the agent).
  const callback = new URL(authorize.searchParams.get('redirect_uri')!);
  callback.searchParams.set('code', 'a-code');
  callback.searchParams.set('state', authorize.searchParams.get('state')!);
  const params = appRedirect(await browser.get(callback.toString()));
  t.equal(params.get('success'), 'true', params.get('error_description') ?? 'connected');
  const { rows } = await app.pg.query<{ id: string }>('SELECT id::text FROM trb_connection WHERE user_id = $1', [user.id]);
  return { token, connectionId: rows[0].id };
}

t.test("the sync follows next links on the system's own origin only", async (t) => {
  const c = await connected(t, 'paging');
  const deps = syncDeps(app);
  // Another host that the operator allows too: only the origin rule keeps the sync from it.
  for (const foreign of [
    `http://127.0.0.1:${elsewhere.port}/fhir/Observation?page=2`,
    `http://localhost:${ehr.port}/fhir/Observation?page=2`,
    `https://127.0.0.1:${ehr.port}/fhir/Observation?page=2`,
  ]) {
    ehr.pageTo(() => foreign);
    const seenBefore = [elsewhere.seen.length, ehr.seen.filter((u) => u.includes('page=2')).length];
    const run = await syncConnection(deps, c.connectionId);
    t.equal(run.status, 'succeeded', run.error ?? 'succeeded');
    t.same([elsewhere.seen.length, ehr.seen.filter((u) => u.includes('page=2')).length], seenBefore, `${foreign}: never requested`);
    const runs = await api(c.token, `/connect/connections/${c.connectionId}/runs?limit=1`);
    const issues = runs.entry[0].issues as { severity: string; code: string; diagnostics: string }[];
    t.same(
      issues.map((i) => [i.severity, i.code]),
      [['error', 'security']],
      'recorded as an issue of the run',
    );
    t.match(
      issues[0].diagnostics,
      /^The search Observation could not finish: A next link of the search Observation pointed away from the system's origin \(http:\/\/\[internal address\]:\d+\); it was not followed\.$/,
    );
    t.notMatch(JSON.stringify(issues), '127.0.0.1', 'the issue names no internal address');
  }
  // The page before the foreign link was stored.
  const obs = await (await fetch(`${BASE}/fhir/r4/Observation`, { headers: { authorization: `Bearer ${c.token}` } })).json();
  t.equal(obs.total ?? obs.entry?.length, 1, 'the first page was stored');

  // A next link on the same origin is followed.
  let served = 0;
  ehr.pageTo(() => (served++ === 0 ? `${EHR_BASE}/Observation?patient=p1&page=2` : undefined));
  const run = await syncConnection(deps, c.connectionId);
  t.equal(run.status, 'succeeded');
  t.ok(
    ehr.seen.some((u) => u.includes('page=2')),
    'the same-origin page was fetched',
  );
  const runs = await api(c.token, `/connect/connections/${c.connectionId}/runs?limit=1`);
  t.same(runs.entry[0].issues, [], 'no issue');
  ehr.pageTo(() => undefined);
});

t.test('run errors the app reads name no internal address', async (t) => {
  const c = await connected(t, 'failing');
  const deps = syncDeps(app);
  // A refusal from the system costs its type, not the run, and what the app reads of it names no address.
  ehr.failObservations(true);
  const refused = await syncConnection(deps, c.connectionId);
  ehr.failObservations(false);
  t.equal(refused.status, 'succeeded', 'a refusal costs its type');
  const row = (await api(c.token, '/connect/connections')).entry
    .find((e: { id: string }) => e.id === c.connectionId)
    .types.find((x: { type: string }) => x.type === 'Observation');
  t.equal(row.status, 'refused');
  t.match(row.refusal, { status: 404, diagnostics: String }, 'with why');
  t.notMatch(JSON.stringify(row), '127.0.0.1', "no internal address in the type's refusal");
  // The system moved behind a loopback name: refused after DNS, and said without the address.
  await app.pg.query('UPDATE trb_system SET resource_url = $1 WHERE id = $2', [`http://localhost:${ehr.port}/fhir`, 'local-ehr']);
  t.teardown(() => app.pg.query('UPDATE trb_system SET resource_url = $1 WHERE id = $2', [EHR_BASE, 'local-ehr']));
  const before = ehr.seen.length;
  const moved = await syncConnection(deps, c.connectionId);
  t.equal(moved.status, 'failed');
  t.match(moved.error, /is on a private or local network address/);
  t.equal(ehr.seen.length, before, 'nothing was sent');
  const list = await api(c.token, '/connect/connections');
  const mine = list.entry.find((e: { id: string }) => e.id === c.connectionId);
  t.equal(mine.last_error, moved.error, 'the connections list shows the error');
  const runs = await api(c.token, `/connect/connections/${c.connectionId}/runs`);
  t.equal(runs.entry.length, 2);
  t.notMatch(JSON.stringify([mine.last_error, mine.last_run, runs.entry]), '127.0.0.1', 'no internal address in what the app reads');
});
