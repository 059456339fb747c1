/**
 * The facades of Blue Button, athena and MEDITECH (src/sandbox/vendors/*.ts) around the ordinary
 * FHIR routes of a real server and database: each patient's records written as the sandbox writes
 * them, read with that patient's own token, and answered as the vendor would (ehr-behaviour.md §9,
 * §3, §4). The wired-up vendors over HTTP: test/integration/vendors-payer.test.ts.
 */
import t from 'tap';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { writeResources } from '../../../src/fhir/bulk.ts';
import { generateSystem, type SandboxPatient } from '../../../src/sandbox/generate.ts';
import { generatePayerSystem } from '../../../src/sandbox/payer.ts';
import { inTransaction } from '../../../src/storage/transaction.ts';
import { ATHENA_SYSTEM, createAthenaFacade, type FacadeAnswer, type InternalFhir } from '../../../src/sandbox/vendors/athena.ts';
import { BLUEBUTTON_SYSTEM, createBlueButtonFacade } from '../../../src/sandbox/vendors/bluebutton.ts';
import { createMeditechFacade, MEDITECH_SYSTEM } from '../../../src/sandbox/vendors/meditech.ts';
import { buildTestApp } from '../../helper.ts';

const app = await buildTestApp(t, { fhirAuth: 'required' });

/** One patient's records in an app of their own, and the ordinary routes as that patient's token reaches them. */
async function ordinaryRoutes(name: string, person: SandboxPatient): Promise<InternalFhir> {
  const { app: client } = await app.auth.createApp({ name });
  const user = (await app.auth.createUser(client.id, person.personKey))!;
  await inTransaction(app.pg, (c) =>
    writeResources(
      app.fhir,
      c,
      { partitionId: client.id, ownerId: user.id },
      person.resources.map((r) => ({ type: r.resourceType, id: r.id!, resource: r })),
    ),
  );
  const { access_token } = await app.auth.exchangeCode(client, await app.auth.newCode(client.id, user.id));
  return {
    internalBase: `${app.config.baseUrl}/fhir/r4`,
    tokenEndpoint: `${app.config.baseUrl}/sandbox/${name}/oauth2/token`,
    get: async (relative) => {
      const res = await app.inject({ method: 'GET', url: `/fhir/r4/${relative}`, headers: { authorization: `Bearer ${access_token}` } });
      return { status: res.statusCode, contentType: String(res.headers['content-type'] ?? ''), body: res.body };
    },
  };
}

const body = <T = Bundle>(a: FacadeAnswer): T => JSON.parse(a.body!) as T;
const req = (base: string, url: string) => {
  const [path, query = ''] = url.split('?');
  return { base, path, query: new URLSearchParams(query) };
};

t.test('Blue Button: three types, beneficiary injected, _count 10 and 51 refused, startIndex pages, prefixed _lastUpdated', async (t) => {
  const person = generatePayerSystem({ seed: 'bb-facade', patients: 1, idPrefix: 'bb', systemName: BLUEBUTTON_SYSTEM.title, years: 3 }).patients[1];
  const fhir = await ordinaryRoutes('bluebutton', person);
  const base = `${app.config.baseUrl}${BLUEBUTTON_SYSTEM.basePath}`;
  const bb = createBlueButtonFacade();
  const serve = (url: string) => bb.serve(req(base, url), fhir);
  const pid = person.resources[0].id!;
  const cov = await serve('Coverage?patient=nobody');
  t.equal(cov.status, 200, String(cov.body));
  t.same(
    body(cov)
      .entry?.map((e) => e.resource!.id)
      .sort(),
    ['a', 'b', 'd'].map((p) => `part-${p}-${pid}`),
    'patient dropped, the beneficiary injected',
  );
  t.ok(
    body(cov).entry!.every((e) => e.resource!.meta?.lastUpdated && e.fullUrl!.startsWith(base)),
    'meta.lastUpdated; public fullUrls',
  );
  const eobs = person.resources.filter((r) => r.resourceType === 'ExplanationOfBenefit').map((r) => r.id);
  const first = body(await serve('ExplanationOfBenefit?_include=*'));
  t.equal(first.entry!.length, 10, '10 by default');
  t.equal(first.total, eobs.length);
  const seen = new Set<string>();
  for (let url: string | undefined = `${base}/ExplanationOfBenefit?_count=7`; url;) {
    const page: Bundle = body(await serve(url.slice(base.length + 1)));
    t.ok(page.entry!.length <= 7);
    for (const e of page.entry!) seen.add(e.resource!.id!);
    url = page.link!.find((l) => l.relation === 'next')?.url;
    if (url) t.match(url, /startIndex=\d+/);
  }
  t.same([...seen].sort(), [...eobs].sort(), 'startIndex pages cover every claim once');
  t.equal((await serve('ExplanationOfBenefit?_count=51')).status, 400, '_count 51: 400');
  t.equal((await serve('ExplanationOfBenefit?_lastUpdated=2024-01-01')).status, 400, 'no prefix: 400');
  t.equal(body(await serve('ExplanationOfBenefit?_lastUpdated=gt2100-01-01')).total, 0);
  t.equal(body(await serve('ExplanationOfBenefit?_lastUpdated=lt2100-01-01&_count=50')).total, eobs.length);
  t.equal((await serve('Observation?patient=x')).status, 404);
  t.equal((await serve(`Patient/${pid}`)).status, 200);
  const cs = body<{ rest: { resource: { type: string }[] }[] }>(await serve('metadata'));
  t.same(
    cs.rest[0].resource.map((r) => r.type),
    ['Patient', 'Coverage', 'ExplanationOfBenefit'],
  );
  t.match((await serve('metadata')).body, `${app.config.baseUrl}/sandbox/bluebutton/oauth2/token`, 'its own token endpoint in oauth-uris');
});

t.test('athena: 403 without intent, cursor paging, about half meta.lastUpdated, _lastUpdated ignored, quota headers', async (t) => {
  const person = generateSystem({
    seed: 'athena-facade',
    patients: 1,
    idPrefix: ATHENA_SYSTEM.idPrefix,
    systemName: ATHENA_SYSTEM.title,
    years: 3,
    ...ATHENA_SYSTEM.generate,
    sharedPerson: false,
  }).patients[0];
  const fhir = await ordinaryRoutes('athena', person);
  const base = `${app.config.baseUrl}${ATHENA_SYSTEM.basePath}`;
  const athena = createAthenaFacade();
  const serve = (url: string) => athena.serve(req(base, url), fhir);
  const pid = person.resources[0].id!;
  const refused = await serve(`MedicationRequest?patient=${pid}`);
  t.equal(refused.status, 403);
  t.match(body(refused), {
    issue: [{ code: 'forbidden', diagnostics: 'one of the required parameter combinations [[patient,intent],[_id]] was not provided' }],
  });
  const meds = await serve(`MedicationRequest?patient=${pid}&intent=order`);
  t.equal(meds.status, 200, String(meds.body));
  t.equal(meds.headers['X-Ratelimit-Limit'], '100000');
  t.equal(Number(meds.headers['X-Ratelimit-Remaining']), 100000 - 2);
  const expected = person.resources.filter((r) => r.resourceType === 'Observation').map((r) => r.id!);
  const got: Resource[] = [];
  let pages = 0;
  for (let url: string | undefined = `${base}/Observation?patient=${pid}&_count=25&_lastUpdated=gt2100-01-01`; url; pages++) {
    const page: Bundle = body(await serve(url.slice(base.length + 1)));
    got.push(...page.entry!.map((e) => e.resource!));
    url = page.link!.find((l) => l.relation === 'next')?.url;
    if (url) t.equal(new URL(url).searchParams.get('cursor'), got.at(-1)!.id, 'cursor = the last id of the page');
  }
  t.ok(pages > 1);
  t.same(got.map((r) => r.id).sort(), [...expected].sort(), '_lastUpdated ignored: every Observation, once');
  t.ok(
    got.some((r) => (r as { status: string }).status === 'entered-in-error'),
    'entered-in-error returned',
  );
  const withMeta = got.filter((r) => r.meta?.lastUpdated).length;
  t.ok(withMeta > got.length * 0.3 && withMeta < got.length * 0.7, `meta.lastUpdated on ${withMeta} of ${got.length}`);
  t.equal((await serve(`Observation?patient=${pid}&cursor=a-80000.E-obs-1-1`)).status, 400, 'an unknown cursor: 400');
  const next = body(await serve(`Observation?patient=${pid}&_count=5`)).link!.find((l) => l.relation === 'next')!.url;
  athena.expirePages();
  t.equal((await serve(next.slice(base.length + 1))).status, 400, 'cursors expired by the admin');
  const cs = (await serve('metadata')).body!;
  t.notMatch(cs, /"_lastUpdated"/i, '_lastUpdated not listed');
  t.same(
    body<{ rest: { resource: { type: string }[] }[] }>(await serve('metadata'))
      .rest[0].resource.map((r) => r.type)
      .sort(),
    [...ATHENA_SYSTEM.types].sort(),
    "athena's types only",
  );
});

t.test('MEDITECH: $everything with _since ignored and start/end, continue paging, _lastUpdated ignored', async (t) => {
  const person = generateSystem({
    seed: 'meditech-facade',
    patients: 1,
    idPrefix: MEDITECH_SYSTEM.idPrefix,
    systemName: MEDITECH_SYSTEM.title,
    years: 3,
    sharedPerson: false,
  }).patients[0];
  const fhir = await ordinaryRoutes('meditech', person);
  const base = `${app.config.baseUrl}${MEDITECH_SYSTEM.basePath}`;
  const meditech = createMeditechFacade();
  const serve = (url: string) => meditech.serve(req(base, url), fhir);
  const pid = person.resources[0].id!;
  const all = async (first: string) => {
    const out: Resource[] = [];
    for (let url: string | undefined = `${base}/${first}`; url;) {
      const a = await serve(url.slice(base.length + 1));
      t.equal(a.status, 200, String(a.body).slice(0, 300));
      const page: Bundle = body(a);
      out.push(...(page.entry ?? []).map((e) => e.resource!).filter((r) => r.resourceType !== 'OperationOutcome'));
      url = page.link?.find((l) => l.relation === 'next')?.url;
      if (url) t.match(url, /[?&]continue=[A-Za-z0-9_-]{16}/);
    }
    return out;
  };
  const chart = await all(`Patient/${pid}/$everything?_count=50`);
  const own = new Set(person.resources.map((r) => `${r.resourceType}/${r.id}`));
  t.ok(
    [...own].every((k) => chart.some((r) => `${r.resourceType}/${r.id}` === k)),
    `$everything: the whole chart (${chart.length})`,
  );
  const since = await all(`Patient/${pid}/$everything?_count=50&_since=2100-01-01T00:00:00Z`);
  t.equal(since.length, chart.length, '_since ignored');
  const year = await all(`Patient/${pid}/$everything?_count=50&start=2025-01-01&end=2025-12-31`);
  t.ok(year.length < chart.length && year.some((r) => r.resourceType === 'Patient'), `start/end: ${year.length} of ${chart.length}`);
  t.equal((await serve(`Patient/${pid}/$everything?start=soon`)).status, 400);
  t.equal((await serve(`CarePlan?patient=${pid}`)).status, 200, 'CarePlan with patient alone');
  const obs = await all(`Observation?patient=${pid}&_lastUpdated=gt2100-01-01&_count=100`);
  t.equal(obs.length, person.resources.filter((r) => r.resourceType === 'Observation').length, '_lastUpdated ignored');
  const cs = (await serve('metadata')).body!;
  t.notMatch(cs, /"_lastUpdated"/i);
  t.match(cs, /"everything"/, '$everything listed');
});
