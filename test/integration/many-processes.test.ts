/**
 * Many processes on one database, as an operator scales out (README, Settings): three API
 * processes (`node src/server.ts` with SYNC_WORKERS=false and EXPORT_CONCURRENCY=0) behind a
 * round-robin load balancer that BASE_URL names, and two `npx tributary worker` processes
 * (SANDBOXES=false, the balancer in OUTBOUND_ALLOW), all on one DATABASE_URL with one
 * ENCRYPTION_KEY and otherwise the defaults (sandboxes on, FHIR auth required, LOG_LEVEL info);
 * only the directory's autoload is off (the first-start test loads it; here it would cost 10-30 s
 * of CPU). The first API process starts alone on the fresh database, the other four after it (see
 * below: processes starting together on an empty database race). It shows, each by assertions
 * that can fail:
 * - writes through one API process are read, searched and versioned alike through the others (one
 *   version per write, one winner among conditional updates sent to three processes at once);
 * - a user's token made through one process works on the others; revoked through one (RFC 7009,
 *   a reused refresh token revoking its family, the app deleted), the others refuse it within a
 *   second, though each kept it in memory (the README promises milliseconds: a LISTEN/NOTIFY
 *   empties every process's token cache);
 * - a connect started at one process is called back at another and completes (its state, and the
 *   browser binding, live in PostgreSQL);
 * - the first syncs queued at the callbacks, and a cycle queued at once (POST /admin/sync), run in
 *   the two workers, each connection's run exactly once per queueing (trb_sync_run, the sync jobs
 *   and the workers' own log lines agree), the cycle shared by both workers;
 * - pg-boss schedules are not doubled by five processes: one row per schedule, one job per tick,
 *   one worker handling it;
 * - Bulk Data exports kicked off at one API process run in a worker (the API processes run none)
 *   and their status and files are served by the other API processes;
 * - one user never sees another's data, through any process;
 * - SIGTERM stops every process cleanly (and the teardown kills what is left, also on failure).
 */
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import pg from 'pg';
import { generateSystem } from '../../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES, type SandboxDefinition } from '../../src/sandbox/systems.ts';
import { testDatabase, waitFor } from '../helper.ts';
import { freePort } from '../pg.ts';
import { Browser, location } from './connect-support.ts';
import { FHIR_JSON, LOINC } from './search-support.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
const NODE = path.join(REPO, 'node_modules', '.bin', 'node');
const ADMIN_KEY = randomBytes(24).toString('hex');
const API_PROCESSES = 3;
const WORKERS = 2;
/** The Lakeside patients connected beside Alice and Bob: more than one worker's SYNC_CONCURRENCY (8). */
const COHORT = 14;
const [NV, LS] = DEFAULT_SANDBOXES;

// --- the processes ---------------------------------------------------------------------------

type Line = Record<string, unknown> & { msg?: string; level?: number };
interface Proc {
  name: string;
  child: ChildProcess;
  lines: Line[];
  stderr(): string;
  exited: Promise<number | null>;
}
const procs: Proc[] = [];
// Whatever ends this test process, no server or worker outlives it.
process.once('exit', () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
});

/** Starts one process with exactly `env` (PATH and the settings: no tap hooks in NODE_OPTIONS), keeping its log lines. */
function launch(name: string, args: string[], env: Record<string, string>): Proc {
  const child = spawn(NODE, args, { cwd: REPO, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Line[] = [];
  let err = '';
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop()!;
    for (const p of parts.filter(Boolean)) {
      try {
        lines.push(JSON.parse(p));
      } catch {
        lines.push({ text: p });
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-20_000)));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const proc = { name, child, lines, stderr: () => err, exited };
  procs.push(proc);
  return proc;
}

/** What a process said before it failed: its stderr and its last log lines. */
const said = (p: Proc) => `--- ${p.name} stderr ---\n${p.stderr().slice(-3000)}\n--- ${p.name} last lines ---\n${JSON.stringify(p.lines.slice(-8))}`;

async function ready(p: Proc, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const ok = await waitFor(async () => p.child.exitCode !== null || (await check()), ms, 200);
  if (!ok || p.child.exitCode !== null) throw new Error(`${p.name} did not start (exit ${p.child.exitCode})\n${said(p)}`);
}

async function stop(p: Proc, ms = 20_000): Promise<number | null> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return p.child.exitCode;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), ms);
  const code = await p.exited;
  clearTimeout(timer);
  return code;
}

// --- the load balancer -----------------------------------------------------------------------

/** Hop-by-hop headers (RFC 9110 section 7.6.1): a proxy does not pass them on. */
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection']);

/**
 * A round-robin HTTP load balancer on loopback, one request at a time to the next backend, as an
 * L4 balancer or a proxy without forwarding headers does (the sandboxes, like the demo, answer
 * only requests no proxy says it forwarded). `x-backend: N` on a request sends it to backend N
 * (the test's way of choosing where a step lands); every answer says who served it (`x-served-by`).
 */
function loadBalancer(ports: number[]) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const served = ports.map(() => 0);
  let next = 0;
  const server = http.createServer((req, res) => {
    const hint = req.headers['x-backend'];
    const i = hint === undefined ? next++ % ports.length : Number(hint);
    served[i]++;
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !HOP.has(k) && k !== 'x-backend'));
    const upstream = http.request({ host: '127.0.0.1', port: ports[i], method: req.method, path: req.url, headers, agent }, (r) => {
      const raw: string[] = [];
      for (let h = 0; h < r.rawHeaders.length; h += 2) if (!HOP.has(r.rawHeaders[h].toLowerCase())) raw.push(r.rawHeaders[h], r.rawHeaders[h + 1]);
      res.writeHead(r.statusCode!, [...raw, 'x-served-by', String(i)]);
      r.pipe(res);
    });
    upstream.on('error', () => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
    req.pipe(upstream);
  });
  return { server, served, close: () => (server.closeAllConnections(), server.close(), agent.destroy()) };
}

// --- start: the database, the balancer, the first API process, then the other four -------------

const databaseUrl = await testDatabase(t);
const db = new pg.Client({ connectionString: databaseUrl });
await db.connect();
t.teardown(() => db.end());
const lbPort = await freePort();
const LB = `http://127.0.0.1:${lbPort}`;
const apiPorts = await Promise.all(Array.from({ length: API_PROCESSES }, () => freePort()));
const common = {
  DATABASE_URL: databaseUrl,
  ENCRYPTION_KEY: randomBytes(32).toString('hex'),
  BASE_URL: LB,
  ADMIN_KEY,
  DIRECTORY_AUTOLOAD: 'false',
};
// `npm start`'s Node flag, and `npx tributary`'s (bin/tributary.ts's first line).
const tributaryFlags = fs
  .readFileSync(path.join(REPO, 'bin', 'tributary.ts'), 'utf8')
  .split('\n')[0]
  .replace(/^#!\S*env\s+(-S\s+)?node\s*/, '')
  .split(/\s+/)
  .filter(Boolean);
const startedAt = Date.now();
const startApi = (i: number) =>
  launch(`api${i}`, ['--max-semi-space-size=16', 'src/server.ts'], {
    ...common,
    PORT: String(apiPorts[i]),
    HOST: '127.0.0.1',
    SYNC_WORKERS: 'false',
    EXPORT_CONCURRENCY: '0',
  });
const startWorker = (i: number) =>
  launch(`worker${i}`, [...tributaryFlags, 'bin/tributary.ts', 'worker'], { ...common, SANDBOXES: 'false', OUTBOUND_ALLOW: `127.0.0.1:${lbPort}` });
const apiReady = (i: number) =>
  ready(apis[i], () =>
    fetch(`http://127.0.0.1:${apiPorts[i]}/readyz`).then(
      (r) => r.ok,
      () => false,
    ),
  );
const workerReady = (w: Proc) => ready(w, async () => w.lines.some((l) => l.msg === 'worker running: sync jobs are taken here until SIGTERM'));
t.teardown(async () => {
  await Promise.all(procs.map((p) => stop(p, 10_000)));
});
const lb = loadBalancer(apiPorts);
await new Promise<void>((r) => lb.server.listen(lbPort, '127.0.0.1', r));
t.teardown(() => lb.close());

// All five start together on the fresh database, as a deployment's first start may: they take
// turns at the migrations (an advisory lock), one makes the demo app and the others find it, one
// writes each sandbox's records while the others wait for them (src/sandbox/records.ts).
const apis: Proc[] = [0, 1, 2].map(startApi);
const workers = [0, 1].map(startWorker);
await Promise.all([...apis.map((_, i) => apiReady(i)), ...workers.map(workerReady)]);
t.comment(`three API processes and two workers ready ${Date.now() - startedAt} ms after their start`);
const sandboxes = DEFAULT_SANDBOXES.length;
const loaded = await waitFor(
  async () => (await db.query('SELECT count(*)::int AS n FROM trb_sandbox WHERE loaded_at IS NOT NULL')).rows[0].n === sandboxes,
  60_000,
);
if (!loaded) throw new Error(`the sandboxes were not loaded within a minute\n${apis.map(said).join('\n')}`);
t.comment(`the sandboxes loaded ${Date.now() - startedAt} ms after the start`);

// --- HTTP through the balancer ---------------------------------------------------------------

interface Reply {
  status: number;
  by: number;
  headers: Headers;
  text: string;
  /** The body parsed, read loosely by the assertions (undefined when not JSON). */
  json: any;
}
/** One request through the balancer, to backend `at` (round robin when undefined). */
async function call(
  at: number | undefined,
  method: string,
  pathname: string,
  o: { token?: string; headers?: Record<string, string>; body?: unknown; form?: Record<string, string> } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...o.headers };
  if (at !== undefined) headers['x-backend'] = String(at);
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  let body: string | undefined;
  if (o.form) [headers['content-type'], body] = ['application/x-www-form-urlencoded', new URLSearchParams(o.form).toString()];
  else if (o.body !== undefined) [headers['content-type'], body] = [headers['content-type'] ?? FHIR_JSON, JSON.stringify(o.body)];
  const res = await fetch(`${LB}${pathname}`, { method, headers, body, redirect: 'manual' });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, by: Number(res.headers.get('x-served-by')), headers: res.headers, text, json };
}
const fhir = (at: number | undefined, token: string, method: string, p: string, body?: unknown, headers?: Record<string, string>) =>
  call(at, method, `/fhir/r4/${p}`, { token, body, headers });
const ALL = Array.from({ length: API_PROCESSES }, (_, i) => i);

const made = await call(0, 'POST', '/admin/apps', {
  headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
  body: { name: 'Many processes', redirect_uris: ['https://app.example/cb'] },
});
if (made.status !== 201) throw new Error(`no app: ${made.status} ${made.text}`);
const creds = { client_id: made.json.client_id as string, client_secret: made.json.client_secret as string };
const appHeaders = { ...creds, 'x-oneup-user-id': 'client' };

interface User {
  appUserId: string;
  id: string;
  token: string;
}
/** A code from the user-management API at one process, a token for it at the next (1upHealth's flow). */
async function tokenFor(appUserId: string, codeAt: number, tokenAt = (codeAt + 1) % API_PROCESSES): Promise<{ access: string; refresh: string }> {
  const codeRes = await call(codeAt, 'POST', '/user-management/v1/user/auth-code', { form: { ...creds, app_user_id: appUserId } });
  const tok = await call(tokenAt, 'POST', '/oauth2/token', { form: { ...creds, code: codeRes.json.code, grant_type: 'authorization_code' } });
  if (tok.status !== 200) throw new Error(`no token for ${appUserId}: ${tok.status} ${tok.text}`);
  return { access: tok.json.access_token, refresh: tok.json.refresh_token };
}
async function newUser(appUserId: string, at: number | undefined): Promise<User> {
  const u = await call(at, 'POST', '/user-management/v1/user', { form: { ...creds, app_user_id: appUserId } });
  if (u.status !== 200) throw new Error(`no user ${appUserId}: ${u.status} ${u.text}`);
  const tok = await call(at === undefined ? undefined : (at + 1) % API_PROCESSES, 'POST', '/oauth2/token', {
    form: { ...creds, code: u.json.code, grant_type: 'authorization_code' },
  });
  return { appUserId, id: String(u.json.oneup_user_id), token: tok.json.access_token };
}

const patientsOf = (def: SandboxDefinition) =>
  generateSystem({ seed: def.seed, patients: def.patients, idPrefix: def.idPrefix, systemName: def.title }).patients;
const nvPeople = patientsOf(NV).filter((p) => p.personKey !== 'shared');
const lsPeople = patientsOf(LS);

const alice = await newUser('alice', 0);
const bob = await newUser('bob', 2);

// --- writes ----------------------------------------------------------------------------------

let patientId = '';
t.test('writes through one API process are read, searched and versioned alike through the others', async (t) => {
  const family = `Multiprocess${randomBytes(3).toString('hex')}`;
  const created = await fhir(0, alice.token, 'POST', 'Patient', { resourceType: 'Patient', name: [{ family, given: ['Ada'] }] });
  t.same([created.status, created.by, created.json?.meta?.versionId], [201, 0, '1'], 'created through api0');
  patientId = created.json.id;
  for (const i of [1, 2]) {
    const read = await fhir(i, alice.token, 'GET', `Patient/${patientId}`);
    t.same([read.status, read.by, read.json?.meta?.versionId, read.json?.name?.[0]?.family], [200, i, '1', family], `read through api${i}`);
  }
  const updated = await fhir(1, alice.token, 'PUT', `Patient/${patientId}`, { ...created.json, gender: 'female' }, { 'if-match': 'W/"1"' });
  t.same([updated.status, updated.json?.meta?.versionId], [200, '2'], 'updated through api1 (If-Match)');
  const read2 = await fhir(2, alice.token, 'GET', `Patient/${patientId}`);
  t.same([read2.json?.meta?.versionId, read2.json?.gender], ['2', 'female'], 'the update is read through api2');
  const v1 = await fhir(0, alice.token, 'GET', `Patient/${patientId}/_history/1`);
  t.same([v1.status, v1.json?.gender], [200, undefined], 'version 1 unchanged, through api0');

  // Three processes, one If-Match each, at once: one wins, the others are refused.
  const dates = ['1970-01-01', '1980-02-02', '1990-03-03'];
  const racing = await Promise.all(
    ALL.map((i) => fhir(i, alice.token, 'PUT', `Patient/${patientId}`, { ...read2.json, birthDate: dates[i] }, { 'if-match': 'W/"2"' })),
  );
  const won = racing.filter((r) => r.status === 200);
  t.equal(won.length, 1, `exactly one of three concurrent updates wins (${racing.map((r) => r.status).join(', ')})`);
  t.ok(
    racing.filter((r) => r.status !== 200).every((r) => r.status === 409 || r.status === 412),
    'the others are refused as conflicts',
  );
  const winner = dates[racing.indexOf(won[0])];
  for (const i of ALL) {
    const history = await fhir(i, alice.token, 'GET', `Patient/${patientId}/_history`);
    const versions = (history.json?.entry ?? []).map((e: { resource: { meta: { versionId: string } } }) => e.resource.meta.versionId);
    t.same(versions, ['3', '2', '1'], `three versions, once each, through api${i}`);
    const found = await fhir(i, alice.token, 'GET', `Patient?family=${family}`);
    t.same(
      [found.json?.total, found.json?.entry?.[0]?.resource?.meta?.versionId, found.json?.entry?.[0]?.resource?.birthDate],
      [1, '3', winner],
      `searched through api${i}: the one Patient, at the winning version`,
    );
  }

  // Creates spread round robin over the three, read back whole from each.
  const before = lb.served.slice();
  const observations = await Promise.all(
    Array.from({ length: 30 }, (_, n) =>
      fhir(undefined, alice.token, 'POST', 'Observation', {
        resourceType: 'Observation',
        status: 'final',
        code: { coding: [{ system: LOINC, code: '8867-4' }] },
        subject: { reference: `Patient/${patientId}` },
        valueQuantity: { value: 60 + n, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
      }),
    ),
  );
  t.ok(
    observations.every((o) => o.status === 201 && o.json.meta.versionId === '1'),
    '30 creates, each one version',
  );
  t.ok(
    lb.served.every((n, i) => n - before[i] >= 9),
    `spread over the three (${lb.served.map((n, i) => n - before[i]).join(', ')})`,
  );
  const ids = observations.map((o) => o.json.id as string).sort();
  t.equal(new Set(ids).size, 30, '30 distinct ids');
  for (const i of ALL) {
    const found = await fhir(i, alice.token, 'GET', `Observation?patient=${patientId}&code=${LOINC}|8867-4&_count=100`);
    t.same((found.json?.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id).sort(), ids, `all 30 found through api${i}`);
  }
});

// --- tokens ----------------------------------------------------------------------------------

/** Polls `at` with the token until it is refused; how long that took (ms), or -1 when it never was within `ms`. */
async function refusedWithin(at: number, token: string, ms: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if ((await fhir(at, token, 'GET', 'Patient?_count=1')).status === 401) return Math.round(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 5));
  }
  return -1;
}
const works = async (at: number, token: string) => (await fhir(at, token, 'GET', 'Patient?_count=1')).status === 200;

t.test('a token made through one process works on the others; revoked through one, the others refuse it within a second', async (t) => {
  const { access } = await tokenFor('alice', 0, 1);
  for (const i of ALL)
    t.ok((await works(i, access)) && (await works(i, access)), `the token made at api1 works at api${i} (twice: now kept in its memory)`);
  const revoked = await call(0, 'POST', '/oauth2/revoke', { form: { ...creds, token: access } });
  t.equal(revoked.status, 200, 'revoked through api0');
  t.equal((await fhir(0, access, 'GET', 'Patient?_count=1')).status, 401, 'api0 refuses it at once');
  for (const i of [1, 2]) {
    const ms = await refusedWithin(i, access, 1000);
    t.ok(ms >= 0, `api${i} refuses it within a second (${ms} ms)`);
  }
  const seen = await call(2, 'POST', '/oauth2/introspect', { form: { ...creds, token: access } });
  t.same(seen.json, { active: false }, 'introspected at api2: inactive');
  await new Promise((r) => setTimeout(r, 300));
  for (const i of ALL) t.equal((await fhir(i, access, 'GET', 'Patient?_count=1')).status, 401, `still refused at api${i}`);
});

t.test('a refresh token used twice, at two processes, revokes its sign-in at every process', async (t) => {
  const first = await tokenFor('alice', 1, 2);
  const refreshed = await call(2, 'POST', '/oauth2/token', { form: { ...creds, grant_type: 'refresh_token', refresh_token: first.refresh } });
  t.equal(refreshed.status, 200, 'refreshed at api2');
  const access = refreshed.json.access_token as string;
  for (const i of ALL) t.ok((await works(i, access)) && (await works(i, access)), `the refreshed token works at api${i}`);
  const reused = await call(0, 'POST', '/oauth2/token', { form: { ...creds, grant_type: 'refresh_token', refresh_token: first.refresh } });
  t.same([reused.status, reused.json?.error], [400, 'invalid_grant'], 'the spent refresh token is refused at api0');
  for (const i of [1, 2]) {
    const ms = await refusedWithin(i, access, 1000);
    t.ok(ms >= 0, `api${i} refuses the token refreshed from it within a second (${ms} ms)`);
  }
  t.ok(await works(1, alice.token), "alice's other sign-in is untouched");
});

t.test("an app deleted through one process: its users' tokens are refused by the others within a second", async (t) => {
  const other = await call(1, 'POST', '/admin/apps', {
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: { name: 'Short-lived', redirect_uris: ['https://other.example/cb'] },
  });
  const otherCreds = { client_id: other.json.client_id as string, client_secret: other.json.client_secret as string };
  const u = await call(2, 'POST', '/user-management/v1/user', { form: { ...otherCreds, app_user_id: 'carol' } });
  const tok = await call(0, 'POST', '/oauth2/token', { form: { ...otherCreds, code: u.json.code, grant_type: 'authorization_code' } });
  const access = tok.json.access_token as string;
  for (const i of ALL) t.ok((await works(i, access)) && (await works(i, access)), `carol's token works at api${i}`);
  const deleted = await call(1, 'DELETE', `/admin/apps/${otherCreds.client_id}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  t.ok(deleted.status >= 200 && deleted.status < 300, `the app deleted through api1 (${deleted.status})`);
  for (const i of [0, 2]) {
    const ms = await refusedWithin(i, access, 1000);
    t.ok(ms >= 0, `api${i} refuses carol's token within a second (${ms} ms)`);
  }
});

// --- connect and sync ------------------------------------------------------------------------

interface Connected {
  user: User;
  startBy: number;
  callbackBy: number;
  back: URL;
}
/** The connect flow in a browser of its own: the connect URL at `start`, the system's pages round robin, the callback at `callback`. */
async function connect(user: User, def: SandboxDefinition, person: { username: string; password: string }, start?: number, callback?: number) {
  const browser = new Browser();
  const hint = (i?: number): Record<string, string> => (i === undefined ? {} : { 'x-backend': String(i) });
  const begun = await browser.fetch(`${LB}/connect/system/clinical/${def.directoryId}?client_id=${creds.client_id}&access_token=${user.token}`, {
    headers: hint(start),
  });
  await begun.arrayBuffer();
  if (begun.status !== 302) throw new Error(`the connect URL answered ${begun.status}`);
  let back: Response | undefined;
  for (let attempt = 0; attempt < 20 && !back; attempt++) {
    const page = await (await browser.get(location(begun, LB).toString())).text();
    const request = /name="request" value="([0-9a-f]{64})"/.exec(page)?.[1];
    if (!request) throw new Error(`no sign-in form: ${page.slice(0, 300)}`);
    const login = await browser.postForm(`${LB}/oauth2/authorize/login`, { request, username: person.username, password: person.password });
    await login.arrayBuffer();
    // A process still writing the sandbox's patients answers 503: the person tries again.
    if (login.status === 503) {
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    if (login.status !== 200) throw new Error(`${person.username} could not sign in: ${login.status}`);
    const consent = await browser.postForm(`${LB}/oauth2/authorize/consent`, { request, decision: 'approve' });
    await consent.arrayBuffer();
    back = await browser.fetch(location(consent, LB).toString(), { headers: hint(callback) });
    await back.arrayBuffer();
  }
  if (!back) throw new Error(`${person.username} never got past the sign-in`);
  return { user, startBy: Number(begun.headers.get('x-served-by')), callbackBy: Number(back.headers.get('x-served-by')), back: location(back, LB) };
}

const connections = new Map<string, string>(); // connection id -> app user id
let cohort: User[] = [];
t.test('a connect started at one process is called back at another and completes', async (t) => {
  const a = await connect(alice, NV, nvPeople[0], 0, 1);
  const b = await connect(bob, NV, nvPeople[1], 2, 0);
  for (const [who, c, [s, cb]] of [
    ['alice', a, [0, 1]],
    ['bob', b, [2, 0]],
  ] as const) {
    t.same([c.startBy, c.callbackBy], [s, cb], `${who}: started at api${s}, called back at api${cb}`);
    t.same(
      [c.back.origin + c.back.pathname, c.back.searchParams.get('success'), c.back.searchParams.get('system_id')],
      ['https://app.example/cb', 'true', NV.directoryId],
      `${who}: back at the app, connected`,
    );
  }
  // More people at Lakeside, four at a time, every step round robin.
  cohort = await Promise.all(Array.from({ length: COHORT }, (_, i) => newUser(`cohort-${i}`, undefined)));
  const done: Connected[] = [];
  for (let i = 0; i < COHORT; i += 4)
    done.push(...(await Promise.all(cohort.slice(i, i + 4).map((u, j) => connect(u, LS, lsPeople[(i + j) % lsPeople.length])))));
  t.ok(
    done.every((c) => c.back.searchParams.get('success') === 'true'),
    `${COHORT} more connected to Lakeside`,
  );
  const { rows } = await db.query<{ id: string; app_user_id: string }>(
    'SELECT c.id::text, u.app_user_id FROM trb_connection c JOIN trb_user u ON u.id = c.user_id WHERE u.app_id = (SELECT id FROM trb_app WHERE client_id = $1)',
    [creds.client_id],
  );
  for (const r of rows) connections.set(r.id, r.app_user_id);
  t.equal(connections.size, COHORT + 2, 'one connection each');
});

interface RunRow {
  id: string;
  connection_id: string;
  status: string;
  created: number;
  updated: number;
}
const runsOf = async (since: Date, until = new Date(8.64e15)) =>
  (
    await db.query<RunRow>(
      'SELECT id::text, connection_id::text, status, created, updated FROM trb_sync_run WHERE started_at >= $1 AND started_at < $2 ORDER BY id',
      [since, until],
    )
  ).rows;
/** The workers' `sync run` log lines: run id -> the workers that logged it. */
function runsByWorker(): Map<string, string[]> {
  const by = new Map<string, string[]>();
  for (const w of workers)
    for (const l of w.lines) if (l.msg === 'sync run' && l.runId) by.set(String(l.runId), [...(by.get(String(l.runId)) ?? []), w.name]);
  return by;
}
/** Each connection's runs among `runs`, and which worker ran each (by its log line). */
function checkOnce(t: Test, runs: RunRow[], what: string) {
  const perConnection = new Map<string, number>();
  for (const r of runs) perConnection.set(r.connection_id, (perConnection.get(r.connection_id) ?? 0) + 1);
  t.same(
    [...connections.keys()].filter((c) => perConnection.get(c) !== 1),
    [],
    `${what}: every connection ran exactly once (${runs.length} runs for ${connections.size} connections)`,
  );
  t.same(
    runs.filter((r) => r.status !== 'succeeded').map((r) => `${connections.get(r.connection_id)}: ${r.status}`),
    [],
    `${what}: every run succeeded, none skipped`,
  );
  const by = runsByWorker();
  t.same(
    runs.filter((r) => by.get(r.id)?.length !== 1).map((r) => `${r.id}: ${by.get(r.id)?.join(',') ?? 'no worker'}`),
    [],
    `${what}: each run logged by exactly one worker`,
  );
  const split = workers.map((w) => runs.filter((r) => by.get(r.id)?.[0] === w.name).length);
  t.comment(`${what}: ${split.map((n, i) => `worker${i} ran ${n}`).join(', ')}`);
  return split;
}
const syncJobs = async (since: Date) =>
  (
    await db.query<{ singleton_key: string; n: number; states: string[] }>(
      "SELECT singleton_key, count(*)::int AS n, array_agg(DISTINCT state::text) AS states FROM pgboss.job WHERE name = 'sync' AND created_on >= $1 GROUP BY 1",
      [since],
    )
  ).rows;

t.test('the first syncs, queued at the callbacks, run in the workers: once per connection', async (t) => {
  const since = new Date(startedAt);
  const finished = await waitFor(async () => {
    const runs = await runsOf(since);
    return runs.length >= connections.size && runs.every((r) => r.status !== 'running');
  }, 90_000);
  t.ok(finished, 'every first sync finished');
  const runs = await runsOf(since);
  checkOnce(t, runs, 'first syncs');
  t.ok(
    runs.every((r) => r.created > 0),
    'each imported the record',
  );
  const jobs = await syncJobs(since);
  t.same(
    [...connections.keys()].filter((c) => jobs.find((j) => j.singleton_key === c)?.n !== 1),
    [],
    'one sync job per connection, queued at its callback',
  );
  t.ok(
    jobs.every((j) => j.states.every((s) => s === 'completed')),
    'every job completed',
  );
});

t.test('a cycle queued at once by an API process is shared by the two workers, each connection run once', async (t) => {
  // The database's clock, as the runs' started_at.
  const t0 = (await db.query<{ now: Date }>('SELECT now()')).rows[0].now;
  const queued = await call(2, 'POST', '/admin/sync', { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  t.same([queued.status, queued.json?.queued], [200, connections.size], 'every connection queued through api2');
  const finished = await waitFor(async () => {
    const runs = await runsOf(t0);
    return runs.length >= connections.size && runs.every((r) => r.status !== 'running');
  }, 60_000);
  t.ok(finished, 'the cycle finished');
  await new Promise((r) => setTimeout(r, 500)); // a run done twice would show now
  const runs = await runsOf(t0);
  const split = checkOnce(t, runs, 'the cycle');
  t.ok(
    split.every((n) => n > 0),
    `both workers ran some of the ${connections.size} (more than one worker's 8 lanes)`,
  );
  t.ok(
    runs.every((r) => r.created === 0 && r.updated === 0),
    'nothing changed at the sources, nothing written',
  );
  t.same(
    (await syncJobs(t0)).filter((j) => j.n !== 1).map((j) => j.singleton_key),
    [],
    'one job per connection',
  );
  t.equal((await runsOf(new Date(startedAt), t0)).length, connections.size, 'and no run in between');
});

// --- isolation -------------------------------------------------------------------------------

const idsOf = (r: Reply) => (r.json?.entry ?? []).map((e: { resource: { id: string } }) => e.resource.id as string).sort();
t.test("one user never sees another user's data, through any process", async (t) => {
  const observationsOf = (p: (typeof nvPeople)[number]) => p.resources.filter((r) => r.resourceType === 'Observation').length;
  const mine = { alice: observationsOf(nvPeople[0]) + 30, bob: observationsOf(nvPeople[1]) };
  const patients = { alice: [] as string[], bob: [] as string[] };
  for (const i of ALL) {
    for (const [who, user] of [
      ['alice', alice],
      ['bob', bob],
    ] as const) {
      const count = await fhir(i, user.token, 'GET', 'Observation?_summary=count');
      t.equal(count.json?.total, mine[who], `${who}: their own ${mine[who]} Observations through api${i}`);
      patients[who] = idsOf(await fhir(i, user.token, 'GET', 'Patient?_count=100'));
    }
    t.same(
      patients.alice.filter((id) => patients.bob.includes(id)),
      [],
      `no Patient in both through api${i}`,
    );
    t.ok(patients.alice.includes(patientId) && patients.alice.length === 2, "alice's: the one she wrote and her synced one");
    t.equal(patients.bob.length, 1, "bob's: his synced one");
    t.equal((await fhir(i, bob.token, 'GET', `Patient/${patientId}`)).status, 404, `bob cannot read alice's Patient through api${i}`);
    t.equal((await fhir(i, alice.token, 'GET', `Patient/${patients.bob[0]}`)).status, 404, `alice cannot read bob's through api${i}`);
    t.equal(
      (await fhir(i, bob.token, 'GET', `Observation?patient=${patientId}&_summary=count`)).json?.total,
      0,
      `bob's search of alice's Patient finds nothing through api${i}`,
    );
    const other = await call(i, 'GET', `/connect/connections/${[...connections].find(([, u]) => u === 'alice')![0]}/runs`, { token: bob.token });
    t.not(other.status, 200, `bob cannot read alice's connection's runs through api${i} (${other.status})`);
  }
});

// --- exports ---------------------------------------------------------------------------------

/** Kicks off at `at`, polls the status at `statusAt`, downloads the files at `filesAt`; the manifest and each file's resources. */
async function exported(kickoff: string, headers: Record<string, string>, at: number, statusAt: number, filesAt: number) {
  const k = await call(at, 'GET', `/fhir/r4/${kickoff}`, { headers: { ...headers, accept: FHIR_JSON, prefer: 'respond-async' } });
  if (k.status !== 202) throw new Error(`kick-off: ${k.status} ${k.text}`);
  const status = new URL(k.headers.get('content-location')!).pathname;
  let res: Reply | undefined;
  for (let i = 0; i < 240; i++) {
    res = await call(statusAt, 'GET', status, { headers });
    if (res.status !== 202) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const files: { type: string; count: number; rows: { resourceType: string; id: string }[]; by: number }[] = [];
  for (const o of res?.json?.output ?? []) {
    const f = await call(filesAt, 'GET', new URL(o.url).pathname, { headers });
    files.push({
      type: o.type,
      count: o.count,
      by: f.by,
      rows: f.text
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
    });
  }
  return { id: status.split('/').pop()!, kickoffBy: k.by, status: res!, files };
}
const exportedBy = (id: string) => procs.filter((p) => p.lines.some((l) => l.msg === 'export completed' && l.export === id)).map((p) => p.name);

t.test('exports kicked off at one API process run in a worker; another serves the status, a third the files', async (t) => {
  const [all, bobs] = await Promise.all([
    exported('$export?_type=Patient,Observation', appHeaders, 0, 1, 2),
    exported('Patient/$export', { authorization: `Bearer ${bob.token}` }, 1, 2, 0),
  ]);
  t.equal(all.kickoffBy, 0, "the app's export kicked off at api0");
  t.same([all.status.status, all.status.by], [200, 1], 'its manifest from api1');
  t.ok(all.files.length > 0 && all.files.every((f) => f.by === 2 && f.rows.length === f.count), 'its files from api2, whole');
  const exportedIds = (e: typeof all, type: string) =>
    e.files
      .filter((f) => f.type === type)
      .flatMap((f) => f.rows.map((r) => r.id))
      .sort();
  const everyPatient = idsOf(await call(1, 'GET', '/fhir/r4/Patient?_count=1000', { headers: appHeaders }));
  t.same(exportedIds(all, 'Patient'), everyPatient, "every Patient of the app's users");
  t.equal(everyPatient.length, 1 + connections.size, 'alice wrote one, each connection brought one');
  const observations = await call(2, 'GET', '/fhir/r4/Observation?_summary=count', { headers: appHeaders });
  t.equal(exportedIds(all, 'Observation').length, observations.json?.total, 'every Observation');
  // The worker logs it as it marks the export completed: a moment after the manifest may be served.
  await waitFor(() => exportedBy(all.id).length > 0 && exportedBy(bobs.id).length > 0, 3000);
  t.equal(exportedBy(all.id).length, 1, 'run by one process');
  t.match(exportedBy(all.id), [/^worker/], `in a worker (${exportedBy(all.id)})`);

  t.same([bobs.kickoffBy, bobs.status.status, bobs.status.by], [1, 200, 2], "bob's own export: kicked off at api1, its manifest from api2");
  const bobsPatients = idsOf(await fhir(0, bob.token, 'GET', 'Patient?_count=100'));
  t.same(exportedIds(bobs, 'Patient'), bobsPatients, 'his Patient only');
  t.notOk(
    bobs.files.some((f) => f.rows.some((r) => r.id === patientId)),
    "nothing of alice's",
  );
  const bobsObservations = (await fhir(0, bob.token, 'GET', 'Observation?_summary=count')).json?.total;
  t.equal(exportedIds(bobs, 'Observation').length, bobsObservations, 'his Observations, all of them');
  t.equal(exportedBy(bobs.id).length, 1, 'run by one process');
  t.match(exportedBy(bobs.id), [/^worker/], `in a worker too (${exportedBy(bobs.id)})`);
  t.same(
    apis.filter((p) => p.lines.some((l) => l.msg === 'export completed')).map((p) => p.name),
    [],
    'no API process ran an export (EXPORT_CONCURRENCY=0)',
  );
});

// --- schedules -------------------------------------------------------------------------------

t.test('five processes, and each schedule once: one row, one job a tick, handled by one worker', async (t) => {
  const schedules = (
    await db.query<{ name: string; key: string; n: number }>('SELECT name, key, count(*)::int AS n FROM pgboss.schedule GROUP BY 1, 2 ORDER BY 1')
  ).rows;
  t.same(
    schedules.map((s) => [s.name, s.n]),
    [
      ['expire', 1],
      ['export-expire', 1],
      ['sync-schedule', 1],
    ],
    'one row per schedule (the expiry of codes and tokens, of exports, and the sync every minute)',
  );
  // The sync's schedule ticks every minute; the first tick comes within a cron pass (30 s) of the start.
  const ticked = await waitFor(
    async () => (await db.query("SELECT 1 FROM pgboss.job WHERE name = 'sync-schedule' AND state = 'completed'")).rowCount! > 0,
    Math.max(0, startedAt + 75_000 - Date.now()),
    500,
  );
  t.ok(ticked, 'the sync schedule ticked');
  // Settled: nothing forwarded waits for its job, no tick is being handled (the counts below are then final).
  const handled = () => workers.map((w) => w.lines.filter((l) => l.msg === 'syncs queued').length);
  const count = async (where: string) => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE ${where}`)).rows[0].n;
  const ticks = () => count("name = 'sync-schedule' AND state = 'completed'");
  const settled = await waitFor(
    async () =>
      (await count("(name = '__pgboss__send-it' OR name IN (SELECT name FROM pgboss.schedule)) AND state IN ('created', 'retry', 'active')")) === 0 &&
      handled().reduce((a, b) => a + b, 0) === (await ticks()),
    10_000,
    200,
  );
  t.ok(settled, 'the schedules settled');
  // Each occurrence is forwarded once (pg-boss files it under a singleton slot), then queued on its own queue.
  const forwarded = (
    await db.query<{ name: string; slot: Date; n: number }>(
      "SELECT data->>'name' AS name, singleton_on AS slot, count(*)::int AS n FROM pgboss.job WHERE name = '__pgboss__send-it' GROUP BY 1, 2 ORDER BY 2, 1",
    )
  ).rows;
  t.comment(`occurrences forwarded: ${forwarded.map((r) => `${r.name} at ${r.slot.toISOString().slice(11, 16)}`).join(', ')}`);
  t.same(
    forwarded.filter((r) => r.n !== 1),
    [],
    'each occurrence forwarded once, though five processes run the cron pass',
  );
  const queuedJobs = (
    await db.query<{ name: string; n: number }>(
      'SELECT name, count(*)::int AS n FROM pgboss.job WHERE name IN (SELECT name FROM pgboss.schedule) GROUP BY 1 ORDER BY 1',
    )
  ).rows;
  t.same(
    queuedJobs,
    Object.entries(Object.groupBy(forwarded, (r) => r.name))
      .map(([name, rs]) => ({ name, n: rs!.length }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    `one job per occurrence on its queue (${queuedJobs.map((r) => `${r.name}: ${r.n}`).join(', ')})`,
  );
  // Handled once: a `syncs queued` line per tick, from one worker or the other.
  const jobs = await ticks();
  t.equal(
    handled().reduce((a, b) => a + b, 0),
    jobs,
    `each tick handled once, by one worker (${handled().join(' and ')} of ${jobs})`,
  );
  t.ok(
    workers.every((w) => w.lines.filter((l) => l.msg === 'syncs queued').every((l) => l.queued === 0)),
    'no connection was due (each synced within the interval): the ticks queued nothing',
  );
});

// --- the end ---------------------------------------------------------------------------------

t.test('no process logged an error, and SIGTERM stops each cleanly', async (t) => {
  const errors = procs.flatMap((p) => p.lines.filter((l) => (l.level ?? 0) >= 50).map((l) => `${p.name}: ${l.msg} ${JSON.stringify(l.err ?? '')}`));
  t.same(errors, [], 'no error lines');
  const codes = await Promise.all(procs.map((p) => stop(p)));
  t.same(
    codes,
    procs.map(() => 0),
    `each exits 0 (${procs.map((p, i) => `${p.name} ${codes[i]}`).join(', ')})`,
  );
  t.comment(`requests served by the API processes through the balancer: ${lb.served.join(', ')}; the whole file ${Date.now() - startedAt} ms`);
});
