/**
 * FHIR Subscriptions over real HTTP receivers on loopback, with the server's own dispatcher:
 * R4 rest-hook subscriptions made through the FHIR API go requested -> active, notify on matching
 * writes only (the resource PUT to [endpoint]/[type]/[id], or an empty POST), with the channel's
 * headers and a Standard Webhooks signature that verifies; unsupported criteria and refused
 * endpoints end in error with the reason; a receiver that refuses is retried and then puts the
 * subscription in error; one that hangs does not delay another subscription; one that is gone
 * (connection refused) ends in error; a user's subscription never hears of another user's
 * records, the app's hears of all; a rolled-back write notifies nothing; notifications of one
 * subscription come in order; criteria the write path cannot evaluate are checked in SQL; and the
 * R5 backport's topic-based subscriptions: handshake, notification Bundles with their
 * SubscriptionStatus, heartbeat, $status and $events; deletes heard only when asked for (HAPI's
 * and Medplum's extensions), sent as DELETE; and a token's scopes bounding what its Subscription hears.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { Webhook } from 'standardwebhooks';
import { setWebhook } from '../../src/sync/webhooks.ts';
import { TOPIC_BASE } from '../../src/subscriptions/topics.ts';
import { buildTestApp } from '../helper.ts';
import { FHIR, FHIR_JSON, LOINC, send, type Json } from './search-support.ts';

const app = await buildTestApp(t, {
  fhirAuth: 'required',
  syncWorkers: true,
  webhookConcurrency: 8,
  subscriptionRetry: { limit: 3, baseMs: 100 },
  subscriptionTimeoutMs: 1500,
});
type Headers = Record<string, string>;

const { app: tenant, clientSecret } = await app.auth.createApp({ name: 'Subscriber' });
const asApp: Headers = { client_id: tenant.clientId, client_secret: clientSecret, 'x-oneup-user-id': 'client' };
// The app's webhook secret signs its notifications too.
const { secret } = await setWebhook(app.pg, app.vault, tenant.id, 'https://hooks.example/unused');
async function person(name: string): Promise<Headers> {
  const user = (await app.auth.createUser(tenant.id, name))!;
  const tokens = await app.auth.exchangeCode(tenant, await app.auth.newCode(tenant.id, user.id));
  return { authorization: `Bearer ${tokens.access_token}` };
}
const alice = await person('alice');
const bob = await person('bob');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitFor<T>(what: () => T | Promise<T>, ms = 15_000): Promise<T> {
  const until = Date.now() + ms;
  let v = await what();
  while (!v && Date.now() < until) {
    await sleep(50);
    v = await what();
  }
  return v;
}

interface Received {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  at: number;
}

/** A receiver on loopback: records each request and answers `answer`'s status, or never ('hang'). */
async function receiver(t: Test, answer: (n: number) => number | 'hang' = () => 200) {
  const got: Received[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      got.push({ method: req.method!, url: req.url!, headers: req.headers as Record<string, string>, body, at: Date.now() });
      const a = answer(got.length);
      if (a !== 'hang') res.writeHead(a).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got, server };
}

async function create(headers: Headers, resource: Json): Promise<Json> {
  const res = await send(app, {
    method: 'POST',
    url: `${FHIR}/${resource.resourceType}`,
    headers: { ...headers, 'content-type': FHIR_JSON },
    payload: resource,
  });
  if (res.statusCode !== 201) throw new Error(`create ${resource.resourceType}: ${res.statusCode} ${res.body}`);
  return res.json();
}
const read = async (headers: Headers, path: string): Promise<Json> => (await send(app, { method: 'GET', url: `${FHIR}/${path}`, headers })).json();

function subscription(endpoint: string, criteria: string, extra: Json = {}): Json {
  return { resourceType: 'Subscription', status: 'requested', reason: 'test', criteria, channel: { type: 'rest-hook', endpoint, ...extra } };
}
/** Creates a subscription and waits until it is no longer requested; answers it as it is then. */
async function subscribe(headers: Headers, sub: Json): Promise<Json> {
  const made = await create(headers, sub);
  const done = await waitFor(async () => {
    const now = await read(headers, `Subscription/${made.id}`);
    return now.status !== 'requested' ? now : undefined;
  });
  return done ?? (await read(headers, `Subscription/${made.id}`));
}
const observation = (code: string, extra: Json = {}): Json => ({
  resourceType: 'Observation',
  status: 'final',
  code: { coding: [{ system: LOINC, code }] },
  ...extra,
});

t.test('an R4 rest-hook subscription: active, then the matching resource PUT to the endpoint, with its headers, signed', async (t) => {
  const r = await receiver(t);
  const sub = await subscribe(
    alice,
    subscription(r.url, `Observation?code=${LOINC}|1234-5`, { payload: FHIR_JSON, header: ['Authorization: Bearer receiver-secret'] }),
  );
  t.equal(sub.status, 'active', 'requested -> active');
  t.notOk(sub.error, 'no error');
  const other = await create(alice, observation('9999-9'));
  const hit = await create(alice, observation('1234-5'));
  await waitFor(() => r.got.length >= 1);
  await sleep(300);
  t.equal(r.got.length, 1, 'only the matching Observation notified');
  const [n] = r.got;
  t.equal(n.method, 'PUT', 'a payload: an update (PUT) at the endpoint taken as a FHIR base');
  t.equal(n.url, `/hook/Observation/${hit.id}`, 'to [endpoint]/Observation/[id]');
  t.equal(n.headers.authorization, 'Bearer receiver-secret', "the channel's header sent");
  t.match(n.headers['content-type'], /application\/fhir\+json/);
  const body = JSON.parse(n.body);
  t.equal(body.id, hit.id, 'the resource itself');
  t.equal(body.meta.versionId, '1');
  t.doesNotThrow(() => new Webhook(secret).verify(n.body, n.headers), 'signed with the app webhook secret (Standard Webhooks)');
  t.not(other.id, hit.id);
  const updated = await send(app, {
    method: 'PUT',
    url: `${FHIR}/Observation/${hit.id}`,
    headers: { ...alice, 'content-type': FHIR_JSON },
    payload: { ...observation('1234-5'), id: hit.id, status: 'amended' },
  });
  t.equal(updated.statusCode, 200);
  await waitFor(() => r.got.length >= 2);
  t.equal(JSON.parse(r.got[1].body).meta.versionId, '2', 'an update notifies too, with the new version');
});

t.test('payload absent: an empty POST to the endpoint', async (t) => {
  const r = await receiver(t);
  const sub = await subscribe(alice, subscription(r.url, `Observation?code=${LOINC}|2000-1`));
  t.equal(sub.status, 'active');
  await create(alice, observation('2000-1'));
  await waitFor(() => r.got.length >= 1);
  t.equal(r.got[0].method, 'POST');
  t.equal(r.got[0].url, '/hook');
  t.equal(r.got[0].body, '', 'no body');
  t.ok(r.got[0].headers['webhook-id'], 'webhook-id');
});

t.test('unsupported criteria and refused endpoints: error, with the reason', async (t) => {
  const r = await receiver(t);
  const unknown = await subscribe(alice, subscription(r.url, 'Observation?no-such-param=1'));
  t.equal(unknown.status, 'error');
  t.match(unknown.error, /no search parameter "no-such-param"/);
  const notType = await subscribe(alice, subscription(r.url, 'Nonsense?code=1'));
  t.equal(notType.status, 'error');
  t.match(notType.error, /criteria/);
  const plain = await subscribe(alice, subscription('http://hooks.example/x', 'Observation?code=1'));
  t.equal(plain.status, 'error');
  t.match(plain.error, /https/, 'plain http only to loopback (WEBHOOK_ALLOW_HTTP off)');
  const email = await subscribe(alice, { ...subscription(r.url, 'Observation?code=1'), channel: { type: 'email', endpoint: 'mailto:a@b.c' } });
  t.equal(email.status, 'error');
  t.match(email.error, /rest-hook/);
  t.equal(r.got.length, 0, 'nothing sent');
});

t.test('a receiver that refuses: retried with backoff, then error with the reason', async (t) => {
  const r = await receiver(t, () => 503);
  const sub = await subscribe(alice, subscription(r.url, `Observation?code=${LOINC}|3000-1`));
  t.equal(sub.status, 'active');
  await create(alice, observation('3000-1'));
  const failed = await waitFor(async () => {
    const s = await read(alice, `Subscription/${sub.id}`);
    return s.status === 'error' ? s : undefined;
  });
  t.ok(failed, 'in error');
  t.match(failed?.error, /failed 3 times in a row; the last time the endpoint answered 503/);
  t.equal(r.got.length, 3, 'tried the limit of times');
  t.equal(new Set(r.got.map((g) => g.headers['webhook-id'])).size, 1, 'the same webhook-id on every attempt');
  t.ok(r.got[2].at - r.got[1].at >= r.got[1].at - r.got[0].at - 20, 'waits longer each time');
});

t.test('a receiver that hangs does not delay another subscription; one that is gone ends in error', async (t) => {
  const slow = await receiver(t, () => 'hang');
  const fast = await receiver(t);
  const gone = await receiver(t);
  const goneUrl = gone.url;
  gone.server.closeAllConnections();
  await new Promise((r) => gone.server.close(r));
  const code = `${LOINC}|4000-1`;
  await subscribe(alice, subscription(slow.url, `Observation?code=${code}`));
  const dead = await subscribe(alice, subscription(goneUrl, `Observation?code=${code}`));
  await subscribe(alice, subscription(fast.url, `Observation?code=${code}`));
  const written = Date.now();
  await create(alice, observation('4000-1'));
  await waitFor(() => fast.got.length >= 1 && slow.got.length >= 1);
  t.ok(fast.got[0].at - written < 1000, `the fast receiver heard within a second (${fast.got[0].at - written} ms) while the slow one hangs`);
  await create(alice, observation('4000-1'));
  await waitFor(() => fast.got.length >= 2);
  t.equal(fast.got.length, 2, 'and the next one too, the slow one still holding its own');
  const failed = await waitFor(async () => {
    const s = await read(alice, `Subscription/${dead.id}`);
    return s.status === 'error' ? s : undefined;
  });
  t.match(failed?.error, /could not be reached/, 'connection refused: error, with the reason');
});

t.test("one app's hanging receivers hold only its share of the deliveries: another app's notification still comes at once", async (t) => {
  const { app: other, clientSecret: otherSecret } = await app.auth.createApp({ name: 'Other app' });
  const asOther: Headers = { client_id: other.clientId, client_secret: otherSecret, 'x-oneup-user-id': 'client' };
  const hanging = await Promise.all([1, 2, 3, 4].map(() => receiver(t, () => 'hang')));
  for (const h of hanging) await subscribe(asApp, subscription(h.url, `Observation?code=${LOINC}|4500-1`));
  const fast = await receiver(t);
  await subscribe(asOther, subscription(fast.url, `Observation?code=${LOINC}|4500-1`));
  await create(asApp, observation('4500-1'));
  await waitFor(() => hanging.filter((h) => h.got.length).length >= 2);
  const written = Date.now();
  await create(asOther, observation('4500-1'));
  await waitFor(() => fast.got.length >= 1);
  t.ok(
    fast.got.length === 1 && fast.got[0].at - written < 1000,
    `the other app's receiver heard within a second (${(fast.got[0]?.at ?? Infinity) - written} ms)`,
  );
  t.ok(hanging.filter((h) => h.got.length).length <= 2, "the app's hanging receivers held at most its share (2 of 8) at once");
});

t.test("owners: a user's subscription hears only of their own records; the app's of every user's", async (t) => {
  const forAlice = await receiver(t);
  const forApp = await receiver(t);
  await subscribe(alice, subscription(forAlice.url, `Observation?code=${LOINC}|5000-1`));
  await subscribe(asApp, subscription(forApp.url, `Observation?code=${LOINC}|5000-1`, { payload: FHIR_JSON }));
  const bobs = await create(bob, observation('5000-1'));
  const alices = await create(alice, observation('5000-1'));
  await waitFor(() => forApp.got.length >= 2 && forAlice.got.length >= 1);
  await sleep(300);
  t.equal(forAlice.got.length, 1, "alice's subscription: alice's Observation only");
  t.same(forApp.got.map((g) => g.url).sort(), [`/hook/Observation/${alices.id}`, `/hook/Observation/${bobs.id}`].sort(), "the app's: both users'");
  const status = await send(app, { method: 'GET', url: `${FHIR}/Subscription`, headers: bob });
  t.equal(status.json().total ?? status.json().entry?.length ?? 0, 0, "bob sees no one else's subscriptions");
});

t.test('a rolled-back write notifies nothing; notifications of one subscription come in order', async (t) => {
  const r = await receiver(t);
  await subscribe(alice, subscription(r.url, `Observation?code=${LOINC}|6000-1`, { payload: FHIR_JSON }));
  const bad = await send(app, {
    method: 'POST',
    url: FHIR,
    headers: { ...alice, 'content-type': FHIR_JSON },
    payload: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: observation('6000-1'), request: { method: 'POST', url: 'Observation' } },
        { resource: { resourceType: 'Observation', status: 'not-a-status' }, request: { method: 'POST', url: 'Observation' } },
      ],
    },
  });
  t.equal(bad.statusCode, 400, 'the transaction fails');
  const first = await create(alice, observation('6000-1'));
  for (let v = 2; v <= 6; v++) {
    await send(app, {
      method: 'PUT',
      url: `${FHIR}/Observation/${first.id}`,
      headers: { ...alice, 'content-type': FHIR_JSON },
      payload: { ...observation('6000-1'), id: first.id, valueString: `v${v}` },
    });
  }
  await waitFor(() => r.got.length >= 6);
  await sleep(300);
  t.equal(r.got.length, 6, 'six versions, nothing of the rolled-back transaction');
  t.same(
    r.got.map((g) => JSON.parse(g.body).meta.versionId),
    ['1', '2', '3', '4', '5', '6'],
    'in order',
  );
});

t.test('criteria the write path cannot evaluate in memory are checked in SQL before delivery', async (t) => {
  const r = await receiver(t);
  const patient = await create(alice, { resourceType: 'Patient', name: [{ family: 'Chained' }] });
  const otherPatient = await create(alice, { resourceType: 'Patient', name: [{ family: 'Elsewise' }] });
  await subscribe(alice, subscription(r.url, 'Observation?subject.family=Chained', { payload: FHIR_JSON }));
  await create(alice, observation('7000-1', { subject: { reference: `Patient/${otherPatient.id}` } }));
  const hit = await create(alice, observation('7000-2', { subject: { reference: `Patient/${patient.id}` } }));
  await waitFor(() => r.got.length >= 1);
  await sleep(500);
  t.same(
    r.got.map((g) => g.url),
    [`/hook/Observation/${hit.id}`],
    'the chain decided in SQL',
  );
});

t.test('turned off, or deleted: no more notifications', async (t) => {
  const r = await receiver(t);
  const sub = await subscribe(alice, subscription(r.url, `Observation?code=${LOINC}|8000-1`));
  const off = await send(app, {
    method: 'PUT',
    url: `${FHIR}/Subscription/${sub.id}`,
    headers: { ...alice, 'content-type': FHIR_JSON },
    payload: { ...sub, status: 'off', meta: undefined },
  });
  t.equal(off.statusCode, 200);
  await create(alice, observation('8000-1'));
  const again = await subscribe(alice, subscription(r.url, `Observation?code=${LOINC}|8000-2`));
  await send(app, { method: 'DELETE', url: `${FHIR}/Subscription/${again.id}`, headers: alice });
  await create(alice, observation('8000-2'));
  await sleep(800);
  t.equal(r.got.length, 0, 'nothing sent');
});

const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
function topicSubscription(endpoint: string, topic: string, filter: string | undefined, content: string, extra: Json = {}): Json {
  return {
    resourceType: 'Subscription',
    meta: { profile: [`${BACKPORT}/backport-subscription`] },
    status: 'requested',
    reason: 'backport test',
    criteria: topic,
    ...(filter ? { _criteria: { extension: [{ url: `${BACKPORT}/backport-filter-criteria`, valueString: filter }] } } : {}),
    channel: {
      type: 'rest-hook',
      endpoint,
      payload: FHIR_JSON,
      _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: content }] },
      ...extra,
    },
  };
}
const param = (p: Json, name: string) => p.parameter.find((x: Json) => x.name === name);

const SEND_DELETES = 'http://hapifhir.io/fhir/StructureDefinition/subscription-send-delete-messages';
const SUPPORTED = 'https://medplum.com/fhir/StructureDefinition/subscription-supported-interaction';
const remove = (headers: Headers, path: string) => send(app, { method: 'DELETE', url: `${FHIR}/${path}`, headers });

t.test('deletes: heard only when asked for (HAPI and Medplum extensions); a DELETE at the endpoint, or an empty POST', async (t) => {
  const [plain, hapi, onlyDeletes, empty] = [await receiver(t), await receiver(t), await receiver(t), await receiver(t)];
  const code = `${LOINC}|8100-1`;
  await subscribe(alice, subscription(plain.url, `Observation?code=${code}`, { payload: FHIR_JSON }));
  const withDeletes = await subscribe(alice, {
    ...subscription(hapi.url, `Observation?code=${code}`, { payload: FHIR_JSON }),
    extension: [{ url: SEND_DELETES, valueBoolean: true }],
  });
  t.equal(withDeletes.status, 'active');
  await subscribe(alice, {
    ...subscription(onlyDeletes.url, `Observation?code=${code}`, { payload: FHIR_JSON }),
    extension: [{ url: SUPPORTED, valueCode: 'delete' }],
  });
  await subscribe(alice, { ...subscription(empty.url, `Observation?code=${code}`), extension: [{ url: SEND_DELETES, valueBoolean: true }] });
  const obs = await create(alice, observation('8100-1'));
  const miss = await create(alice, observation('8100-2'));
  t.equal((await remove(alice, `Observation/${miss.id}`)).statusCode, 200, 'a delete the criteria do not match');
  t.equal((await remove(alice, `Observation/${obs.id}`)).statusCode, 200);
  await waitFor(() => hapi.got.length >= 2 && onlyDeletes.got.length >= 1 && empty.got.length >= 2);
  await sleep(500);
  t.same(
    plain.got.map((g) => g.method),
    ['PUT'],
    'by default creates and updates only (as Medplum and HAPI FHIR): the delete not sent',
  );
  t.same(
    hapi.got.map((g) => `${g.method} ${g.url}`),
    [`PUT /hook/Observation/${obs.id}`, `DELETE /hook/Observation/${obs.id}`],
    'send-delete-messages: the delete as DELETE at [endpoint]/[type]/[id], in order, and only the matching one',
  );
  t.equal(hapi.got[1].body, '', 'no body');
  t.doesNotThrow(() => new Webhook(secret).verify(hapi.got[1].body, hapi.got[1].headers), 'signed');
  t.same(
    onlyDeletes.got.map((g) => g.method),
    ['DELETE'],
    'supported-interaction delete: the delete only, not the create',
  );
  t.same(
    empty.got.map((g) => `${g.method} ${g.url} ${g.body.length}`),
    ['POST /hook 0', 'POST /hook 0'],
    'no payload: an empty POST for the delete too',
  );
  const bad = await subscribe(alice, { ...subscription(plain.url, 'Observation'), extension: [{ url: SUPPORTED, valueCode: 'read' }] });
  t.equal(bad.status, 'error');
  t.match(bad.error, /"read" is not one of create, update, delete/);
});

t.test('deletes of criteria the write path cannot evaluate: checked before the resource is gone', async (t) => {
  const r = await receiver(t);
  const patient = await create(alice, { resourceType: 'Patient', name: [{ family: 'Removed' }] });
  const other = await create(alice, { resourceType: 'Patient', name: [{ family: 'Kept' }] });
  await subscribe(alice, {
    ...subscription(r.url, 'Observation?subject.family=Removed', { payload: FHIR_JSON }),
    extension: [{ url: SUPPORTED, valueCode: 'delete' }],
  });
  const hit = await create(alice, observation('8200-1', { subject: { reference: `Patient/${patient.id}` } }));
  const miss = await create(alice, observation('8200-2', { subject: { reference: `Patient/${other.id}` } }));
  await remove(alice, `Observation/${miss.id}`);
  await remove(alice, `Observation/${hit.id}`);
  await waitFor(() => r.got.length >= 1);
  await sleep(500);
  t.same(
    r.got.map((g) => `${g.method} ${g.url}`),
    [`DELETE /hook/Observation/${hit.id}`],
    'the chain decided in the deleting transaction',
  );
});

t.test('Subscription.end: nothing heard after it, then turned off', async (t) => {
  const r = await receiver(t);
  const end = new Date(Date.now() + 2500).toISOString();
  const sub = await subscribe(alice, { ...subscription(r.url, `Observation?code=${LOINC}|8400-1`), end });
  t.equal(sub.status, 'active');
  await create(alice, observation('8400-1'));
  await waitFor(() => r.got.length >= 1);
  t.equal(r.got.length, 1, 'heard before its end');
  await sleep(Math.max(0, Date.parse(end) - Date.now()) + 100);
  await create(alice, observation('8400-1'));
  const off = await waitFor(async () => {
    const now = await read(alice, `Subscription/${sub.id}`);
    return now.status === 'off' ? now : undefined;
  });
  t.equal(off?.status, 'off', 'turned off by the server after its end');
  await sleep(300);
  t.equal(r.got.length, 1, 'nothing heard after its end');
  const past = await subscribe(alice, { ...subscription(r.url, `Observation?code=${LOINC}|8400-2`), end: '2020-01-01T00:00:00Z' });
  t.equal(past.status, 'off', 'written with an end already past: off');
  const bad = await send(app, {
    method: 'POST',
    url: `${FHIR}/Subscription`,
    headers: { ...alice, 'content-type': FHIR_JSON },
    payload: { ...subscription(r.url, 'Observation'), end: 'tomorrow' },
  });
  t.equal(bad.statusCode, 400, 'an end that is not an instant: refused by validation');
});

t.test("a token's scopes: a Subscription hears of no more than the token may search", async (t) => {
  const r = await receiver(t);
  const user = (await app.auth.createUser(tenant.id, 'narrow'))!;
  const scope = 'patient/Observation.rs patient/Subscription.cruds';
  const token = (await app.auth.exchangeCode(tenant, await app.auth.newCode(tenant.id, user.id, scope))).access_token;
  const narrow = { authorization: `Bearer ${token}` };
  const write = (payload: Json, method = 'POST', url = `${FHIR}/Subscription`) =>
    send(app, { method, url, headers: { ...narrow, 'content-type': FHIR_JSON }, payload });
  const refused = await write(subscription(r.url, 'Condition?clinical-status=active', { payload: FHIR_JSON }));
  t.equal(refused.statusCode, 403, 'criteria on a type the token may not search');
  t.match(refused.json().issue[0].diagnostics, /Condition/);
  const chained = await write(subscription(r.url, 'Observation?subject.family=Removed'));
  t.equal(chained.statusCode, 403, 'a chain reaches Patient, which the token may not search');
  const topic = await write(topicSubscription(r.url, `${TOPIC_BASE}/Condition`, undefined, 'full-resource'));
  t.equal(topic.statusCode, 403, 'a topic of a type the token may not search');
  const inBundle = await send(app, {
    method: 'POST',
    url: FHIR,
    headers: { ...narrow, 'content-type': FHIR_JSON },
    payload: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: subscription(r.url, 'Condition'), request: { method: 'POST', url: 'Subscription' } }],
    },
  });
  t.equal(inBundle.statusCode, 403, 'in a transaction too');
  const ok = await write(subscription(r.url, `Observation?code=${LOINC}|8300-1`, { payload: FHIR_JSON }));
  t.equal(ok.statusCode, 201, 'criteria on a type the token may search');
  const patched = await send(app, {
    method: 'PATCH',
    url: `${FHIR}/Subscription/${ok.json().id}`,
    headers: { ...narrow, 'content-type': 'application/json-patch+json' },
    payload: [{ op: 'replace', path: '/criteria', value: 'Condition' }],
  });
  t.equal(patched.statusCode, 403, 'a PATCH could change the criteria to anything: refused');
  const changed = await write({ ...ok.json(), criteria: 'Condition' }, 'PUT', `${FHIR}/Subscription/${ok.json().id}`);
  t.equal(changed.statusCode, 403, 'an update to criteria beyond the scopes');
  t.equal((await read(narrow, `Subscription/${ok.json().id}`)).criteria, `Observation?code=${LOINC}|8300-1`, 'nothing changed');
});

t.test('backport: handshake, notification Bundles with their SubscriptionStatus, $status, $events, heartbeat', async (t) => {
  const r = await receiver(t);
  const sub = await subscribe(
    alice,
    topicSubscription(r.url, `${TOPIC_BASE}/Observation`, `Observation?code=${LOINC}|9000-1`, 'full-resource', {
      extension: [{ url: `${BACKPORT}/backport-heartbeat-period`, valueUnsignedInt: 1 }],
    }),
  );
  t.equal(sub.status, 'active', 'active once the endpoint took the handshake');
  const handshake = JSON.parse(r.got[0].body);
  t.equal(handshake.type, 'history');
  t.equal(handshake.entry[0].resource.resourceType, 'Parameters');
  t.equal(param(handshake.entry[0].resource, 'type').valueCode, 'handshake');
  t.equal(param(handshake.entry[0].resource, 'topic').valueCanonical, `${TOPIC_BASE}/Observation`);
  const before = r.got.length;
  await create(alice, observation('9000-2'));
  const hit = await create(alice, observation('9000-1'));
  const note = await waitFor(() =>
    r.got.map((g) => JSON.parse(g.body)).find((b) => param(b.entry[0].resource, 'type').valueCode === 'event-notification'),
  );
  t.ok(note, 'an event notification');
  const status = note.entry[0].resource;
  t.equal(param(status, 'events-since-subscription-start').valueString, '1');
  const event = param(status, 'notification-event');
  t.equal(event.part.find((p: Json) => p.name === 'event-number').valueString, '1');
  t.match(event.part.find((p: Json) => p.name === 'focus').valueReference.reference, new RegExp(`/Observation/${hit.id}$`));
  t.equal(note.entry[1].resource.id, hit.id, 'full-resource: the Observation in the Bundle');
  t.equal(note.entry[1].request.method, 'POST');
  t.ok(r.got.length > before);

  const heartbeat = await waitFor(
    () => r.got.map((g) => JSON.parse(g.body)).find((b) => param(b.entry[0].resource, 'type').valueCode === 'heartbeat'),
    8000,
  );
  t.ok(heartbeat, 'a heartbeat when nothing happened for heartbeatPeriod');

  const st = await send(app, { method: 'GET', url: `${FHIR}/Subscription/${sub.id}/$status`, headers: alice });
  t.equal(st.statusCode, 200);
  const stBundle = st.json();
  t.equal(stBundle.type, 'searchset');
  t.equal(param(stBundle.entry[0].resource, 'type').valueCode, 'query-status');
  t.equal(param(stBundle.entry[0].resource, 'status').valueCode, 'active');
  t.equal(param(stBundle.entry[0].resource, 'events-since-subscription-start').valueString, '1');
  const ev = await send(app, { method: 'GET', url: `${FHIR}/Subscription/${sub.id}/$events?eventsSinceNumber=1&content=id-only`, headers: alice });
  t.equal(ev.statusCode, 200);
  const evBundle = ev.json();
  t.equal(param(evBundle.entry[0].resource, 'type').valueCode, 'query-event');
  t.equal(evBundle.entry.length, 2, 'the status and the one event');
  t.notOk(evBundle.entry[1].resource, 'id-only: no resource');
  t.match(evBundle.entry[1].fullUrl, new RegExp(`/Observation/${hit.id}$`));
  const all = (await send(app, { method: 'GET', url: `${FHIR}/Subscription/$status?id=${sub.id}`, headers: alice })).json();
  t.equal(all.entry.length, 1, 'Subscription/$status?id=: the one named');
  t.equal(param(all.entry[0].resource, 'subscription').valueReference.reference.split('/').pop(), sub.id);
  const mine = (await send(app, { method: 'GET', url: `${FHIR}/Subscription/$status?status=active`, headers: bob })).json();
  t.equal(mine.entry.length, 0, "bob's: none of alice's");
  const notYours = await send(app, { method: 'GET', url: `${FHIR}/Subscription/${sub.id}/$status`, headers: bob });
  t.equal(notYours.statusCode, 404, "another user's subscription: not found");
  const anonymous = await send(app, { method: 'GET', url: `${FHIR}/Subscription/${sub.id}/$status` });
  t.equal(anonymous.statusCode, 401, 'no credentials: 401');
  t.equal(anonymous.json().resourceType, 'OperationOutcome');
  const unknownTopic = await subscribe(alice, topicSubscription(r.url, 'https://example.org/SubscriptionTopic/nope', undefined, 'id-only'));
  t.equal(unknownTopic.status, 'error');
  t.match(unknownTopic.error, /not a SubscriptionTopic of this server/);
});

t.test('backport: a handshake the endpoint refuses ends in error', async (t) => {
  const r = await receiver(t, () => 500);
  const sub = await subscribe(alice, topicSubscription(r.url, `${TOPIC_BASE}/Condition`, undefined, 'id-only'));
  t.equal(sub.status, 'error', 'never active');
  t.match(sub.error, /answered 500/);
  t.equal(r.got.length, 3, 'the handshake tried the limit of times');
});
