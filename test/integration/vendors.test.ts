/**
 * The simulated vendors Epic, eClinicalWorks and Oracle Health over real HTTP (a listening server,
 * a real SMART sign-in through each vendor's endpoints with PKCE and its own client
 * authentication: Tributary's key for Epic and eCW, HTTP Basic for Oracle), each behaviour they
 * reproduce checked where a client sees it (ehr-behaviour.md §1, §5, §2): status codes and
 * OperationOutcome codes, page sessions and their expiry, the per-minute limit, refresh without
 * rotation, Binary content negotiation. The internal routes behind the facades answer no one else.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import t, { type Test } from 'tap';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { buildApp } from '../../src/app.ts';
import { DEFAULT_SANDBOXES, type SandboxDefinition } from '../../src/sandbox/systems.ts';
import { generateSystem, type GenerateOptions } from '../../src/sandbox/generate.ts';
import { ECW_SYSTEM, MinuteLimit } from '../../src/sandbox/vendors/ecw.ts';
import { EPIC_SYSTEM } from '../../src/sandbox/vendors/epic.ts';
import { ORACLE_SYSTEM } from '../../src/sandbox/vendors/oracle.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';

const DEFS = DEFAULT_SANDBOXES.filter((d) => ([EPIC_SYSTEM.name, ECW_SYSTEM.name, ORACLE_SYSTEM.name] as string[]).includes(d.name));
const port = await freePort();
const BASE = `http://127.0.0.1:${port}`;
const ADMIN_KEY = randomBytes(32).toString('hex');
const app = await buildApp(
  testConfig(await testDatabase(t), { baseUrl: BASE, sandboxes: true, sandboxSystems: DEFS, fhirAuth: 'required', adminKey: ADMIN_KEY }),
  { logger: false },
);
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());
await app.sandboxesLoaded;

const def = (name: string) => DEFS.find((d) => d.name === name)!;
const form = (fields: Record<string, string>) => new URLSearchParams(fields);
const people = (d: SandboxDefinition) =>
  generateSystem({
    seed: d.seed,
    patients: d.patients,
    idPrefix: d.idPrefix,
    systemName: d.title,
    years: d.years,
    ...(d.generate ?? {}),
  } as GenerateOptions).patients;

/** Tributary's client authentication at a vendor's token endpoint, as the registration says. */
async function clientAuth(
  d: SandboxDefinition,
  tokenEndpoint: string,
  fields: Record<string, string>,
  headers: Record<string, string>,
): Promise<void> {
  if (d.auth === 'private_key_jwt') {
    const assertion = await app.clientKeys.idToken({ jti: randomUUID() }, d.clientId, tokenEndpoint, d.clientId, 300);
    Object.assign(fields, { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion });
    return;
  }
  const { rows } = await app.pg.query<{ sealed: Buffer }>('SELECT client_secret_sealed AS sealed FROM trb_client_registration WHERE system_id = $1', [
    d.directoryId,
  ]);
  const secret = app.vault.decrypt(rows[0].sealed, d.clientId, 'registration-secret');
  if (d.auth === 'client_secret_basic') headers.authorization = `Basic ${Buffer.from(`${d.clientId}:${secret}`).toString('base64')}`;
  else Object.assign(fields, { client_id: d.clientId, client_secret: secret });
}

interface Session {
  base: string;
  patient: string;
  tokens: { access_token: string; refresh_token: string; expires_in: number; scope: string };
  tokenEndpoint: string;
  get(path: string, headers?: Record<string, string>): Promise<Response>;
  json<T = Bundle>(path: string): Promise<T>;
}

/** A SMART standalone launch at a vendor: discovery at its base, PKCE, sign-in, consent, its token endpoint with its client authentication. */
async function launch(t: Test, d: SandboxDefinition, username: string, password: string): Promise<Session> {
  const base = `${BASE}${d.basePath}`;
  const conf = await (await fetch(`${base}/.well-known/smart-configuration`)).json();
  t.equal(conf.token_endpoint, `${BASE}/sandbox/${d.name}/oauth2/token`, 'its own token endpoint');
  const verifier = randomBytes(32).toString('base64url');
  const redirectUri = `${BASE}/connect/callback`;
  const q = form({
    response_type: 'code',
    client_id: d.clientId,
    redirect_uri: redirectUri,
    scope: 'launch/patient openid fhirUser offline_access patient/*.read',
    state: 's1',
    aud: base,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  });
  const page = await (await fetch(`${conf.authorization_endpoint}?${q}`)).text();
  const request = /name="request" value="([0-9a-f]{64})"/.exec(page)![1];
  await fetch(`${BASE}/oauth2/authorize/login`, { method: 'POST', body: form({ request, username, password }), redirect: 'manual' });
  const back = await fetch(`${BASE}/oauth2/authorize/consent`, { method: 'POST', body: form({ request, decision: 'approve' }), redirect: 'manual' });
  const code = new URL(back.headers.get('location')!).searchParams.get('code')!;
  const fields: Record<string, string> = { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier };
  const headers: Record<string, string> = {};
  await clientAuth(d, conf.token_endpoint, fields, headers);
  const res = await fetch(conf.token_endpoint, { method: 'POST', headers, body: form(fields) });
  t.equal(res.status, 200, 'tokens at the vendor token endpoint');
  const tokens = await res.json();
  const get = (path: string, h: Record<string, string> = {}) =>
    fetch(path.startsWith('http') ? path : `${base}/${path}`, {
      headers: { authorization: `Bearer ${tokens.access_token}`, accept: 'application/fhir+json', ...h },
    });
  return { base, patient: tokens.patient, tokens, tokenEndpoint: conf.token_endpoint, get, json: async (path) => (await get(path)).json() };
}

type Issue = { severity: string; code: string; diagnostics?: string; details?: { coding?: { code: string }[] } };
const issueOf = async (res: Response) => ((await res.json()) as { issue: Issue[] }).issue[0];
const epicCode = (i: Issue) => i.details?.coding?.[0]?.code;
const matches = (b: Bundle) => (b.entry ?? []).filter((e) => e.resource?.resourceType !== 'OperationOutcome').map((e) => e.resource!);

async function allPages(s: Session, first: string): Promise<{ resources: Resource[]; links: string[] }> {
  const resources: Resource[] = [];
  const links: string[] = [];
  for (let url: string | undefined = first; url && links.length < 200;) {
    const res = await s.get(url);
    if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`);
    const b = (await res.json()) as Bundle;
    resources.push(...matches(b));
    url = b.link?.find((l) => l.relation === 'next')?.url;
    if (url) links.push(url);
  }
  return { resources, links };
}

t.test(
  'Epic (§1): required category, categories, CarePlan, Patient search, refused types, OperationOutcome entries, _lastupdated, no meta, sessions, Binary',
  async (t) => {
    const d = def('epic');
    const person = people(d).find((p) => p.personKey !== 'shared')!;
    const s = await launch(t, d, person.username, person.password);
    t.equal(s.tokens.expires_in, 3600, 'access 3600 s');
    t.notMatch(
      s.tokens.scope,
      /Coverage|ServiceRequest|Specimen|MedicationDispense|QuestionnaireResponse/,
      'not granted: Coverage, ServiceRequest, …',
    );
    t.match(s.tokens.scope, /patient\/Observation\.read/, 'per-type v1 scopes granted');
    const mine = (type: string) => person.resources.filter((r) => r.resourceType === type);

    const bare = await s.get(`Observation?patient=${s.patient}`);
    t.equal(bare.status, 400);
    const required = await issueOf(bare);
    t.match(required, { severity: 'error', code: 'required', diagnostics: 'Must have either code or category.' });
    t.equal(epicCode(required), '59108');
    const suppressed = await issueOf(await s.get(`Observation?patient=${s.patient}&category=LDA`));
    t.match(suppressed, { severity: 'warning', code: 'suppressed' }, 'a listed category not granted: suppressed');
    t.equal(epicCode(suppressed), '59204');
    const unknown = await s.get(`Observation?patient=${s.patient}&category=symptom`);
    t.equal(unknown.status, 400);
    t.equal(epicCode(await issueOf(unknown)), '59109', 'an unknown category: 59109');
    const cp = await s.get(`CarePlan?patient=${s.patient}`);
    t.equal(cp.status, 400);
    t.match(await issueOf(cp), { code: 'business-rule' });
    t.equal((await s.get(`CarePlan?patient=${s.patient}&category=38717003`)).status, 200, 'longitudinal CarePlans');
    t.match(await issueOf(await s.get(`CarePlan?patient=${s.patient}&category=assess-plan`)), { code: 'suppressed' });
    t.equal((await s.get(`Patient?_id=${s.patient}`)).status, 400, 'Patient search refused');
    const me = await s.get(`Patient/${s.patient}`);
    t.equal(me.status, 200, 'Patient read works');
    t.notOk(((await me.json()) as Resource).meta?.lastUpdated, 'no meta.lastUpdated');
    const coverage = await s.get(`Coverage?patient=${s.patient}`);
    t.equal(coverage.status, 403);
    t.equal(await coverage.text(), '', 'unscoped type: 403 without a body');
    const provenance = await s.get(`Provenance?patient=${s.patient}`);
    t.equal(provenance.status, 404);
    t.match(provenance.headers.get('content-type'), /text\/html/);
    t.match(await provenance.text(), /404 - File or directory not found/, 'an IIS page');

    const conditions = await s.json(`Condition?patient=${s.patient}`);
    const oo = conditions.entry!.find((e) => e.resource!.resourceType === 'OperationOutcome')!;
    t.match(oo, {
      fullUrl: /^urn:uuid:/,
      search: { mode: 'outcome' },
      resource: { issue: [{ severity: 'warning', diagnostics: /Client not authorized for Condition - Encounter Diagnosis/ }] },
    });
    t.equal(conditions.total, matches(conditions).length, 'total = the entries of the page');

    const vitals = mine('Observation').filter((r) => JSON.stringify(r).includes('"vital-signs"'));
    const ignored = await allPages(s, `Observation?patient=${s.patient}&category=vital-signs&_lastUpdated=gt2100-01-01&_count=100`);
    t.equal(ignored.resources.length, vitals.length, '_lastUpdated ignored elsewhere: the full set');
    const warned = await s.json(`Observation?patient=${s.patient}&category=vital-signs&_lastUpdated=gt2100-01-01`);
    t.match(JSON.stringify(warned), /4122/, 'with the 4122 warning');
    t.equal(
      matches(await s.json(`DocumentReference?patient=${s.patient}&_lastupdated=gt2100-01-01`)).length,
      0,
      '_lastupdated works on DocumentReference',
    );
    const cs = await s.json<{ rest: { resource: { type: string; searchParam?: { name: string }[]; operation?: { name: string }[] }[] }[] }>(
      'metadata',
    );
    const withLastUpdated = cs.rest[0].resource.filter((r) => r.searchParam?.some((p) => p.name.toLowerCase() === '_lastupdated')).map((r) => r.type);
    t.same(withLastUpdated, ['DocumentReference'], '_lastupdated listed on DocumentReference only');
    t.notOk(
      cs.rest[0].resource.find((r) => r.type === 'Patient')!.operation?.some((o) => o.name === 'everything'),
      'no Patient/$everything',
    );
    t.equal((await s.get(`Patient/${s.patient}/$everything`)).status, 404);

    const labs = mine('Observation').filter((r) => JSON.stringify(r).includes('"laboratory"'));
    const paged = await allPages(s, `Observation?patient=${s.patient}&category=laboratory&_count=10`);
    t.equal(paged.resources.length, labs.length, 'every laboratory Observation through the sessions');
    t.ok(
      paged.links.length > 0 && paged.links.every((l) => new RegExp(`^${s.base}/Observation\\?sessionID=[0-9A-F-]+$`).test(l)),
      'next = {base}/Observation?sessionID=…',
    );
    t.ok(
      paged.resources.every((r) => !r.meta?.lastUpdated && !r.meta?.versionId),
      'no meta.lastUpdated or versionId',
    );
    const next = (await s.json(`Observation?patient=${s.patient}&category=laboratory&_count=5`)).link!.find((l) => l.relation === 'next')!.url;
    const expired = await fetch(`${BASE}/admin/sandbox/epic/expire-page-tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    });
    t.ok(((await expired.json()) as { expired: number }).expired >= 1);
    const gone = await s.get(next);
    t.equal(gone.status, 400, 'an expired session: 400');
    const fatal = await issueOf(gone);
    t.match(fatal, { severity: 'fatal', code: 'processing' });
    t.equal(epicCode(fatal), '4113');

    const doc = matches(await s.json(`DocumentReference?patient=${s.patient}&_count=100`)) as {
      content: { attachment: { url: string; contentType: string } }[];
    }[];
    const urls = doc.map((r) => r.content[0].attachment.url);
    t.ok(
      urls.every((u) => /^Binary\/[\w.-]+$/.test(u)) && doc.every((r) => r.content[0].attachment.contentType === 'text/html'),
      'notes: text/html at a relative Binary url',
    );
    const readable = urls.find((u) => !/-1$/.test(u))!;
    const asJson = await s.get(readable);
    t.equal(asJson.status, 200);
    t.match(await asJson.json(), { resourceType: 'Binary', contentType: 'text/html', data: /.+/ }, 'Accept fhir+json: a FHIR Binary');
    const asHtml = await s.get(readable, { accept: 'text/html' });
    t.match(asHtml.headers.get('content-type'), /text\/html/);
    t.match(await asHtml.text(), /<html/i, 'Accept text/html: the bytes');
    const refused = await s.get(urls.find((u) => /-1$/.test(u))!);
    t.equal(refused.status, 403);
    t.equal(epicCode(await issueOf(refused)), '59203', 'one Binary per patient: 59203');

    const internal = await fetch(`${BASE}/sandbox/epic/internal/fhir/r4/Observation?patient=${s.patient}&category=laboratory`, {
      headers: { authorization: `Bearer ${s.tokens.access_token}` },
    });
    t.equal(internal.status, 404, 'the internal routes: 404 from outside');
    const { rows } = await app.pg.query('SELECT vendor, resource_url FROM trb_system WHERE id = $1', ['sandbox-epic']);
    t.same(rows[0], { vendor: 'Epic (simulated)', resource_url: s.base }, 'directory: the vendor label and public base');
  },
);

t.test(
  'Oracle Health (§2): 570 s, refresh without rotation, CarePlan, _lastUpdated rules, _count, social history, paging, meta, whole-search 500, masked, Binary',
  async (t) => {
    const d = def('oracle');
    const all = people(d);
    const person = all.find((p) => p.resources.some((r) => r.resourceType === 'Procedure' && !(r as { status?: string }).status))!;
    t.ok(person, 'a patient with a Procedure without status');
    const s = await launch(t, d, person.username, person.password);
    t.equal(s.tokens.expires_in, 570, 'access 570 s');
    const refresh = async () => {
      const fields: Record<string, string> = { grant_type: 'refresh_token', refresh_token: s.tokens.refresh_token };
      const headers: Record<string, string> = {};
      await clientAuth(d, s.tokenEndpoint, fields, headers);
      return fetch(s.tokenEndpoint, { method: 'POST', headers, body: form(fields) });
    };
    const r1 = await refresh();
    t.equal(r1.status, 200);
    const t1 = await r1.json();
    t.equal(t1.refresh_token, s.tokens.refresh_token, 'the same refresh token back');
    t.not(t1.access_token, s.tokens.access_token, 'a new access token');
    t.equal((await refresh()).status, 200, 'and it works again: no rotation, no reuse detection');
    t.equal((await s.get(`Patient/${s.patient}`)).status, 200, 'the first access token still works');

    t.equal((await s.get(`CarePlan?patient=${s.patient}`)).status, 400, 'CarePlan without category: 400');
    t.equal((await s.get(`CarePlan?patient=${s.patient}&category=careteam`)).status, 400, 'a category other than assess-plan: 400');
    t.equal((await s.get(`CarePlan?patient=${s.patient}&category=assess-plan`)).status, 200);
    t.equal((await s.get(`MedicationRequest?patient=${s.patient}&_lastUpdated=gt2020-01-01T00:00:00Z`)).status, 400, 'MedicationRequest: gt refused');
    t.equal((await s.get(`MedicationRequest?patient=${s.patient}&_lastUpdated=ge2020-01-01`)).status, 400, 'MedicationRequest: a time is required');
    t.equal((await s.get(`MedicationRequest?patient=${s.patient}&_lastUpdated=ge2020-01-01T00:00:00Z`)).status, 200);
    t.equal((await s.get(`Immunization?patient=${s.patient}&_lastUpdated=lt2100-01-01`)).status, 400, 'Immunization: gt/ge only');
    t.equal((await s.get(`Observation?patient=${s.patient}&date=ge2020-01-01&_lastUpdated=ge2020-01-01`)).status, 400, 'date with _lastUpdated: 400');
    t.equal(matches(await s.json(`Observation?patient=${s.patient}&_lastUpdated=gt2100-01-01`)).length, 0, '_lastUpdated on Observation works');

    const obs = person.resources.filter((r) => r.resourceType === 'Observation');
    const social = obs.filter((r) => JSON.stringify(r).includes('"social-history"'));
    const first = await s.json(`Observation?patient=${s.patient}&_count=5`);
    const firstIds = new Set(matches(first).map((r) => r.id));
    t.ok(
      social.length > 0 && social.every((r) => firstIds.has(r.id)),
      `every social-history Observation (${social.length}) on page 1 whatever _count`,
    );
    const next = first.link!.find((l) => l.relation === 'next')!.url;
    t.match(next, /[?&]-pageContext=[\w-]+&-pageDirection=NEXT$/, '-pageContext paging');
    const pages = await allPages(s, `Observation?patient=${s.patient}&_count=500`);
    t.equal(pages.resources.length, obs.length, 'every Observation once');
    t.equal(new Set(pages.resources.map((r) => r.id)).size, obs.length);
    const big = await s.json(`Observation?patient=${s.patient}&_count=500`);
    t.ok(matches(big).length <= 200 + social.length, '_count clamped to 200 (with the social history)');
    t.ok(
      pages.resources.every((r) => r.meta?.lastUpdated && r.meta.versionId),
      'meta.lastUpdated and versionId',
    );
    const masked = pages.resources.filter((r) => (r as { status: string }).status === 'entered-in-error') as (Resource & {
      dataAbsentReason?: { coding?: { code: string }[] };
    })[];
    t.ok(
      masked.length > 0 &&
        masked.every((r) => !Object.keys(r).some((k) => k.startsWith('value')) && r.dataAbsentReason?.coding?.[0]?.code === 'masked'),
      `entered-in-error masked (${masked.length})`,
    );
    const reports = matches(await s.json(`DiagnosticReport?patient=${s.patient}`));
    t.ok(
      reports.length > 0 && reports.length <= 10 && reports.every((r) => !r.meta?.lastUpdated),
      'DiagnosticReport: 10 by default, no meta.lastUpdated',
    );
    const procedures = await s.get(`Procedure?patient=${s.patient}&_count=100`);
    t.equal(procedures.status, 500, 'a Procedure without status fails the whole search');
    t.match(await issueOf(procedures), { severity: 'fatal', code: 'required' });

    const docs = matches(await s.json(`DocumentReference?patient=${s.patient}`)) as {
      content: { attachment: { url: string; contentType: string } }[];
    }[];
    const pdf = docs[0].content.find((c) => c.attachment.contentType === 'application/pdf')!.attachment.url;
    t.equal((await s.get(pdf, { accept: 'application/json' })).status, 406, 'Accept application/json: 406');
    t.equal((await s.get(pdf, { accept: 'application/fhir+json' })).status, 200);
    const bytes = await s.get(pdf, { accept: 'application/pdf' });
    t.equal(bytes.headers.get('content-type'), 'application/pdf');
    t.equal(
      Buffer.from(await bytes.arrayBuffer())
        .subarray(0, 5)
        .toString(),
      '%PDF-',
      'Accept = its type: the PDF',
    );
  },
);

t.test(
  'eClinicalWorks (§5): declared combinations, page paging, http self link, 250 calls a minute with token calls, 429 without Retry-After',
  async (t) => {
    const limit = new MinuteLimit(250);
    const at = Date.UTC(2026, 0, 1, 10, 0, 5);
    for (let i = 0; i < 250; i++) limit.take(at);
    t.notOk(limit.take(at + 50_000), 'the 251st call of a minute is refused');
    t.notOk(limit.take(at + 54_000), 'and every call until the minute ends');
    t.ok(limit.take(at + 55_000), 'the next minute: answered again');

    const d = def('ecw');
    const person = people(d).find((p) => p.personKey !== 'shared')!;
    const startMinute = Math.floor(Date.now() / 60_000);
    let calls = 1; // discovery is not counted; the token call is
    const s = await launch(t, d, person.username, person.password);
    const bare = await s.get(`Observation?patient=${s.patient}`);
    calls++;
    t.equal(bare.status, 400);
    t.match(await issueOf(bare), {
      code: 'processing',
      diagnostics: 'Invalid request: Does not know how to handle get operation with parameter [patient]',
    });
    const counted = await s.get(`Observation?patient=${s.patient}&_count=10`);
    calls++;
    t.match(await issueOf(counted), { diagnostics: 'Invalid request: Does not know how to handle get operation with parameter [patient,_count]' });
    t.equal((await s.get(`CareTeam?patient=${s.patient}`)).status, 400, 'CareTeam needs status');
    calls++;
    const vitals = await s.json(`Observation?patient=${s.patient}&category=vital-signs&_count=10`);
    calls++;
    t.match(vitals.link!.find((l) => l.relation === 'self')!.url, /^http:\/\//, 'self link in http://');
    const next = vitals.link!.find((l) => l.relation === 'next')!.url;
    t.match(next, /[?&]page=2(&|$)/, 'page paging');
    const second = await s.json(next);
    calls++;
    t.ok(matches(second).length > 0 && matches(second)[0].meta?.lastUpdated, 'page 2, with meta.lastUpdated');
    const { rows } = await app.pg.query('SELECT rate_limit_per_minute FROM trb_system WHERE id = $1', ['sandbox-ecw']);
    t.equal(rows[0].rate_limit_per_minute, 250, 'the directory states the limit');

    // The flood within one minute: near its end, wait for the next (its count then starts at 0).
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 20_000) {
      await new Promise((r) => setTimeout(r, left + 50));
      calls = 0;
    }
    const floodMinute = Math.floor(Date.now() / 60_000);
    let ok = 0;
    let throttled: Response | undefined;
    while (ok < 600) {
      const res = await s.get(`Patient/${s.patient}`);
      if (res.status === 429) {
        throttled = res;
        break;
      }
      await res.arrayBuffer();
      ok++;
    }
    t.ok(throttled, '429 at last');
    t.equal(throttled!.headers.get('retry-after'), null, 'no Retry-After');
    // Exact when the minute did not turn during the flood (and the calls before it were in the same minute, or not counted)
    if (Math.floor(Date.now() / 60_000) === floodMinute && (calls === 0 || floodMinute === startMinute))
      t.equal(calls + ok, 250, 'exactly 250 calls answered in the minute, the token call counted');
    const token = await fetch(s.tokenEndpoint, {
      method: 'POST',
      body: form({ grant_type: 'refresh_token', refresh_token: s.tokens.refresh_token }),
    });
    t.equal(token.status, 429, 'the token endpoint is refused too');
  },
);

t.test('admin routes of a vendor: records changed at the source, a big patient, bad bodies a 400', async (t) => {
  const d = def('epic');
  const person = people(d).find((p) => p.personKey !== 'shared')!;
  const post = (path: string, body: unknown) =>
    fetch(`${BASE}/admin/sandbox/epic/${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const changed = await post('records', { username: person.username, type: 'Observation', action: 'enter-in-error', count: 2 });
  t.equal(changed.status, 200);
  t.equal(((await changed.json()) as { ids: string[] }).ids.length, 2, 'two source ids answered');
  t.equal((await post('records', { username: 'nobody', type: 'Observation', action: 'change', count: 1 })).status, 404);
  t.equal((await post('records', { type: 'Observation' })).status, 400);
  const big = await post('big-patient', { resources: 200 });
  t.equal(big.status, 200);
  t.match(await big.json(), { username: 'bigpatient200', password: 'bigpatient2002026', patientId: /^ep-/, resources: Number });
  t.equal((await post('big-patient', { resources: 0 })).status, 400);
});
