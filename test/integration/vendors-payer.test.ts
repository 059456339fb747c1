/**
 * The simulated vendors Blue Button, athena and MEDITECH over real HTTP (a listening server, real
 * sign-in through each vendor's endpoints, PKCE, its own client authentication at its token
 * endpoint), each behaviour they reproduce checked where a client sees it (ehr-behaviour.md §9,
 * §3, §4): status codes, OperationOutcome codes, page sizes and paging parameters, dropped and
 * ignored parameters, meta, entered-in-error records, rate headers, $everything.
 */
import { createHash, randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { buildApp } from '../../src/app.ts';
import { DEFAULT_SANDBOXES, type SandboxDefinition } from '../../src/sandbox/systems.ts';
import { generateSystem } from '../../src/sandbox/generate.ts';
import { generatePayerSystem } from '../../src/sandbox/payer.ts';
import { ATHENA_SYSTEM } from '../../src/sandbox/vendors/athena.ts';
import { BLUEBUTTON_SYSTEM } from '../../src/sandbox/vendors/bluebutton.ts';
import { MEDITECH_SYSTEM } from '../../src/sandbox/vendors/meditech.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';

const NAMES = [BLUEBUTTON_SYSTEM.name, ATHENA_SYSTEM.name, MEDITECH_SYSTEM.name] as string[];
const DEFS = DEFAULT_SANDBOXES.filter((d) => NAMES.includes(d.name));
if (DEFS.length < NAMES.length) {
  // The vendors are served once plugins/sandbox.ts registers them in DEFAULT_SANDBOXES.
  t.pass(`not run: ${NAMES.filter((n) => !DEFS.some((d) => d.name === n)).join(', ')} not among the sandbox systems yet`);
  process.exit(0);
}
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

/** Tributary's secret at a system, as its registration keeps it (sealed). */
async function secretOf(d: SandboxDefinition): Promise<string> {
  const { rows } = await app.pg.query<{ sealed: Buffer }>('SELECT client_secret_sealed AS sealed FROM trb_client_registration WHERE system_id = $1', [
    d.directoryId,
  ]);
  return app.vault.decrypt(rows[0].sealed, d.clientId, 'registration-secret');
}

interface Session {
  base: string;
  patient: string;
  token: string;
  refresh?: string;
  get(path: string, headers?: Record<string, string>): Promise<Response>;
  json<T = Bundle>(path: string): Promise<T>;
}

/** A SMART standalone launch at a vendor, as a client does it: discovery at its base, PKCE, sign-in, consent, its token endpoint with its client authentication. */
async function launch(t: Test, d: SandboxDefinition, basePath: string, username: string, password: string): Promise<Session> {
  const base = `${BASE}${basePath}`;
  const conf = await (await fetch(`${base}/.well-known/smart-configuration`)).json();
  t.equal(conf.token_endpoint, `${BASE}/sandbox/${d.name}/oauth2/token`, 'its own token endpoint');
  t.same(conf.token_endpoint_auth_methods_supported, [d.auth]);
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
  t.match(page, `Sign in to ${d.title}`);
  const request = /name="request" value="([0-9a-f]{64})"/.exec(page)![1];
  await fetch(`${BASE}/oauth2/authorize/login`, { method: 'POST', body: form({ request, username, password }), redirect: 'manual' });
  const back = await fetch(`${BASE}/oauth2/authorize/consent`, { method: 'POST', body: form({ request, decision: 'approve' }), redirect: 'manual' });
  const code = new URL(back.headers.get('location')!).searchParams.get('code')!;
  const secret = await secretOf(d);
  const fields: Record<string, string> = { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier };
  const headers: Record<string, string> = {};
  if (d.auth === 'client_secret_basic') headers.authorization = `Basic ${Buffer.from(`${d.clientId}:${secret}`).toString('base64')}`;
  else Object.assign(fields, { client_id: d.clientId, client_secret: secret });
  const res = await fetch(conf.token_endpoint, { method: 'POST', headers, body: form(fields) });
  t.equal(res.status, 200, 'tokens at the vendor token endpoint');
  const tokens = await res.json();
  const get = (path: string, h: Record<string, string> = {}) =>
    fetch(path.startsWith('http') ? path : `${base}/${path}`, {
      headers: { authorization: `Bearer ${tokens.access_token}`, accept: 'application/fhir+json', ...h },
    });
  return {
    base,
    patient: tokens.patient,
    token: tokens.access_token,
    refresh: tokens.refresh_token,
    get,
    json: async (path) => (await get(path)).json(),
  };
}

/** Every page of a search, following `next` as given; the pages and their links. */
async function allPages(s: Session, first: string): Promise<{ resources: Resource[]; links: string[]; sizes: number[] }> {
  const resources: Resource[] = [];
  const links: string[] = [];
  const sizes: number[] = [];
  for (let url: string | undefined = first; url && sizes.length < 100;) {
    const res = await s.get(url);
    if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`);
    const b = (await res.json()) as Bundle;
    const page = (b.entry ?? []).map((e) => e.resource!).filter((r) => r.resourceType !== 'OperationOutcome');
    resources.push(...page);
    sizes.push(page.length);
    url = b.link?.find((l) => l.relation === 'next')?.url;
    if (url) links.push(url);
  }
  return { resources, links, sizes };
}

const outcome = async (res: Response) => ((await res.json()) as { issue: { severity: string; code: string; diagnostics?: string }[] }).issue[0];

t.test('Blue Button: three types, beneficiary injected, _count 10/50, startIndex, prefixed _lastUpdated (§9)', async (t) => {
  const d = def('bluebutton');
  const person = generatePayerSystem({
    seed: d.seed,
    patients: d.patients,
    idPrefix: d.idPrefix,
    systemName: d.title,
    years: BLUEBUTTON_SYSTEM.years,
  }).patients[1];
  const s = await launch(t, d, BLUEBUTTON_SYSTEM.basePath, person.username, person.password);
  t.equal(s.patient, person.resources[0].id, 'the patient context: the beneficiary');
  t.equal((await s.get(`Patient/${s.patient}`)).status, 200);
  const byId = await s.json(`Patient?_id=${s.patient}`);
  t.equal(byId.entry?.length, 1);
  const coverage = await s.json(`Coverage?patient=${s.patient}`);
  t.same(
    coverage.entry?.map((e) => e.resource!.id).sort(),
    ['a', 'b', 'd'].map((p) => `part-${p}-${s.patient}`),
    'Coverage?patient=: patient dropped, the beneficiary injected',
  );
  t.ok(
    coverage.entry?.every((e) => e.resource!.meta?.lastUpdated),
    'meta.lastUpdated present',
  );
  const eobs = person.resources.filter((r) => r.resourceType === 'ExplanationOfBenefit').length;
  const first = await s.json(`ExplanationOfBenefit?patient=${s.patient}&_include=*&_since=2020-01-01`);
  t.equal(first.entry?.length, Math.min(10, eobs), '_count 10 by default');
  t.equal(first.total, eobs);
  const small = await s.json(`ExplanationOfBenefit?patient=${s.patient}&_include=*&_since=2020-01-01&_count=3`);
  const next = small.link?.find((l) => l.relation === 'next')?.url;
  t.match(next, /startIndex=3/, 'startIndex paging');
  t.notMatch(next, /_include|_since/, 'unknown parameters dropped');
  const all = await allPages(s, `ExplanationOfBenefit?_count=50`);
  t.equal(new Set(all.resources.map((r) => r.id)).size, eobs, 'every claim once, in pages of up to 50');
  const too = await s.get('ExplanationOfBenefit?_count=51');
  t.equal(too.status, 400, '_count=51: 400');
  t.equal((await outcome(too)).code, 'invalid');
  t.equal((await s.get('ExplanationOfBenefit?_lastUpdated=2020-01-01')).status, 400, '_lastUpdated without lt/le/gt/ge: 400');
  t.equal((await s.json('ExplanationOfBenefit?_lastUpdated=gt2100-01-01')).total, 0, 'gt in the future: nothing');
  t.equal((await s.json('ExplanationOfBenefit?_lastUpdated=lt2100-01-01&_count=50')).total, eobs);
  const obs = await s.get(`Observation?patient=${s.patient}`);
  t.equal(obs.status, 404, 'a type Blue Button does not serve: 404');
  const pde = await s.json('ExplanationOfBenefit?type=PDE&_count=50');
  t.ok(
    (pde.entry ?? []).every((e) => JSON.stringify(e.resource).includes('"PDE"')),
    'type=PDE: pharmacy claims only',
  );
});

t.test('athena: MedicationRequest needs intent (403), cursor paging, half meta.lastUpdated, entered-in-error, quota headers (§3)', async (t) => {
  const d = def('athena');
  const person = generateSystem({
    seed: d.seed,
    patients: d.patients,
    idPrefix: d.idPrefix,
    systemName: d.title,
    years: ATHENA_SYSTEM.years,
    ...ATHENA_SYSTEM.generate,
  }).patients[1];
  const s = await launch(t, d, ATHENA_SYSTEM.basePath, person.username, person.password);
  t.match(s.patient, /^a-80000\.E-pat-\d+$/, 'practice-prefixed ids');
  const refused = await s.get(`MedicationRequest?patient=${s.patient}`);
  t.equal(refused.status, 403, 'MedicationRequest without intent: 403');
  t.match(await outcome(refused), {
    code: 'forbidden',
    diagnostics: 'one of the required parameter combinations [[patient,intent],[_id]] was not provided',
  });
  const meds = await s.get(`MedicationRequest?patient=${s.patient}&intent=order`);
  t.equal(meds.status, 200);
  t.ok(meds.headers.get('x-ratelimit-limit') && meds.headers.get('x-ratelimit-remaining'), 'X-Ratelimit-Limit and -Remaining on answers');
  const all = await allPages(s, `Observation?patient=${s.patient}&_count=20`);
  const expected = person.resources.filter((r) => r.resourceType === 'Observation');
  t.equal(all.resources.length, expected.length, 'Observation with patient alone: every Observation');
  t.equal(new Set(all.resources.map((r) => r.id)).size, expected.length, 'none twice');
  t.ok(all.links.length > 1 && all.links.every((l) => /[?&]cursor=a-80000\.E-/.test(l)), 'next links carry cursor=<an id>');
  const eie = all.resources.filter((r) => (r as { status: string }).status === 'entered-in-error').length;
  t.ok(eie > 0, `${eie} entered-in-error Observations returned`);
  const withMeta = all.resources.filter((r) => r.meta?.lastUpdated).length;
  t.ok(withMeta > 0 && withMeta < all.resources.length, `meta.lastUpdated on ${withMeta} of ${all.resources.length}`);
  const ignored = await allPages(s, `Observation?patient=${s.patient}&_count=100&_lastUpdated=gt2100-01-01`);
  t.equal(ignored.resources.length, expected.length, '_lastUpdated ignored: the full set');
});

t.test('MEDITECH: $everything with _since ignored and start/end, continue paging, no _lastUpdated (§4)', async (t) => {
  const d = def('meditech');
  const person = generateSystem({ seed: d.seed, patients: d.patients, idPrefix: d.idPrefix, systemName: d.title, years: MEDITECH_SYSTEM.years })
    .patients[1];
  const s = await launch(t, d, MEDITECH_SYSTEM.basePath, person.username, person.password);
  const cs = await s.json<{ rest: { resource: { type: string; searchParam?: { name: string }[]; operation?: { name: string }[] }[] }[] }>('metadata');
  const patientCs = cs.rest[0].resource.find((r) => r.type === 'Patient');
  t.ok(
    patientCs?.operation?.some((o) => o.name === 'everything'),
    '$everything listed',
  );
  t.notOk(
    cs.rest[0].resource.some((r) => r.searchParam?.some((p) => p.name.toLowerCase() === '_lastupdated')),
    '_lastUpdated on no resource',
  );
  const everything = await allPages(s, `Patient/${s.patient}/$everything?_count=100`);
  const chart = person.resources.length;
  t.ok(everything.resources.length >= chart, `the whole chart (${everything.resources.length} for ${chart} of the patient's own)`);
  t.ok(
    everything.links.every((l) => /[?&]continue=/.test(l)),
    'next links carry continue=',
  );
  const since = await allPages(s, `Patient/${s.patient}/$everything?_count=100&_since=2100-01-01T00:00:00Z`);
  t.equal(since.resources.length, everything.resources.length, '_since accepted and ignored: the whole chart again');
  const year = await allPages(s, `Patient/${s.patient}/$everything?_count=100&start=2025-01-01&end=2025-12-31`);
  t.ok(year.resources.length < everything.resources.length && year.resources.some((r) => r.resourceType === 'Patient'), 'start/end narrow it');
  const cp = await s.get(`CarePlan?patient=${s.patient}`);
  t.equal(cp.status, 200, 'CarePlan with patient alone works');
  const obs = await allPages(s, `Observation?patient=${s.patient}&_lastUpdated=gt2100-01-01&_count=100`);
  t.equal(obs.resources.length, person.resources.filter((r) => r.resourceType === 'Observation').length, '_lastUpdated ignored');
});
