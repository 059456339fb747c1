/**
 * What a Subscription resource asks for, as the registry reads it: R4 criteria and the backport's
 * topics with their filters, the channel (endpoint rules, headers, payload), what is refused and
 * why; the definition's hash ignores what does not change matching or delivery (its status).
 */
import t from 'tap';
import { createR4Registry } from '../../../src/indexing/registry.ts';
import { paramLookup } from '../../../src/fhir/search-registry.ts';
import {
  channelOf,
  FILTER_CRITERIA,
  PAYLOAD_CONTENT,
  HEARTBEAT_PERIOD,
  parseHeaders,
  readDefinition,
  type SubscriptionLike,
} from '../../../src/subscriptions/definition.ts';
import { notificationBundle } from '../../../src/subscriptions/notification.ts';
import { topicOf, TOPIC_BASE, TOPICS } from '../../../src/subscriptions/topics.ts';

const params = paramLookup(createR4Registry());
const BASES = ['https://fhir.example/fhir/r4'];
const classic = (over: Partial<SubscriptionLike> = {}, channel: object = {}): SubscriptionLike => ({
  resourceType: 'Subscription',
  status: 'requested',
  criteria: 'Observation?code=http://loinc.org|1234-5',
  ...over,
  channel: { type: 'rest-hook', endpoint: 'https://hooks.example/in', ...channel },
});
const read = (s: SubscriptionLike, allowHttp = false) => readDefinition(s, params, allowHttp, BASES);

t.test('R4 criteria: the type, the search, requested whatever the client wrote but off and error', async (t) => {
  const d = read(classic());
  t.equal(d.problem, undefined);
  t.equal(d.resourceType, 'Observation');
  t.equal(d.criteria, 'Observation?code=http://loinc.org|1234-5');
  t.equal(d.topic, null);
  t.equal(d.wanted, 'requested');
  t.equal(read(classic({ status: 'active' })).wanted, 'requested', 'active is the server to give');
  t.equal(read(classic({ status: 'off' })).wanted, 'off');
  t.equal(read(classic({ status: 'active' })).hash, d.hash, 'the status is not part of the definition');
  t.not(read(classic({ criteria: 'Observation?code=x' })).hash, d.hash, 'the criteria are');
  t.not(read(classic({}, { header: ['X-A: b'] })).hash, d.hash, 'so is the channel');
  t.equal(read(classic({ criteria: 'Observation' })).problem, undefined, 'a type alone: all of it');
});

t.test('what is refused, and why', async (t) => {
  t.match(read(classic({ criteria: 'Observation?bogus=1' })).problem, /no search parameter "bogus"/);
  t.match(read(classic({ criteria: 'Observation?_sort=date' })).problem, /no criterion/);
  t.match(read(classic({ criteria: 'nothing' })).problem, /is not a search/);
  t.match(read(classic({}, { endpoint: 'http://hooks.example/in' })).problem, /https/);
  t.equal(read(classic({}, { endpoint: 'http://hooks.example/in' }), true).problem, undefined, 'unless WEBHOOK_ALLOW_HTTP');
  t.equal(read(classic({}, { endpoint: 'http://127.0.0.1:9/in' })).problem, undefined, 'http to loopback: development');
  t.match(read(classic({}, { endpoint: 'https://u:p@hooks.example/' })).problem, /user name or password/);
  t.match(read(classic({}, { endpoint: undefined })).problem, /endpoint is missing/);
  t.match(read(classic({}, { type: 'websocket' })).problem, /rest-hook notifications only/);
  t.match(read(classic({}, { payload: 'application/fhir+xml' })).problem, /not supported/);
  t.match(read(classic({}, { header: ['no colon'] })).problem, /Name: value/);
  t.match(read(classic({}, { header: ['webhook-signature: x'] })).problem, /server sets it/);
});

t.test('the channel: headers, payload', async (t) => {
  t.same(parseHeaders(['Authorization: Bearer abc', 'X-Thing:  two words ']), [
    ['Authorization', 'Bearer abc'],
    ['X-Thing', 'two words'],
  ]);
  t.throws(() => parseHeaders(['X-Evil: a\r\nb']), /Name: value/);
  t.equal(channelOf(classic()).payload, 'none', 'no payload: an empty notification');
  t.equal(channelOf(classic({}, { payload: 'application/fhir+json' })).payload, 'full');
});

t.test('topic-based (backport): a topic of this server, its filters, payload content, heartbeat', async (t) => {
  const topic = `${TOPIC_BASE}/Encounter`;
  const s = (content?: string, filters: string[] = [], hb?: number): SubscriptionLike => ({
    resourceType: 'Subscription',
    status: 'requested',
    criteria: topic,
    _criteria: { extension: filters.map((f) => ({ url: FILTER_CRITERIA, valueString: f })) },
    channel: {
      type: 'rest-hook',
      endpoint: 'https://hooks.example/in',
      payload: 'application/fhir+json',
      ...(content ? { _payload: { extension: [{ url: PAYLOAD_CONTENT, valueCode: content }] } } : {}),
      ...(hb ? { extension: [{ url: HEARTBEAT_PERIOD, valueUnsignedInt: hb }] } : {}),
    },
  });
  const d = read(s('full-resource', ['Encounter?patient=Patient/1', 'status=finished'], 60));
  t.equal(d.problem, undefined);
  t.equal(d.topic, topic);
  t.equal(d.resourceType, 'Encounter');
  t.equal(d.criteria, 'Encounter?patient=Patient%2F1&status=finished', 'the filters ANDed into one search');
  t.equal(d.heartbeatSeconds, 60);
  t.equal(channelOf(s('full-resource')).payload, 'full');
  t.equal(channelOf(s()).payload, 'id-only', 'id-only unless it says');
  t.equal(channelOf(s('empty')).payload, 'empty');
  t.match(read(s('everything')).problem, /not one of empty, id-only, full-resource/);
  t.match(read(s('id-only', ['Observation?code=1'])).problem, /not on Encounter/);
  t.match(read({ ...s('id-only'), criteria: 'https://other.example/SubscriptionTopic/x' }).problem, /not a SubscriptionTopic of this server/);
  t.equal(topicOf(`${topic}|1.0`)?.resourceType, 'Encounter', 'a canonical with a version');
  t.ok(TOPICS.length >= 20, 'a topic per common type');
});

/** A notification's status input, as the dispatcher gives it. */
const STATUS = {
  base: 'https://x/fhir/r4',
  subscriptionId: 's1',
  topic: 'https://t',
  status: 'active',
  type: 'event-notification' as const,
  eventsSinceStart: '0',
  withFocus: true,
};

t.test('a notification Bundle: history, the SubscriptionStatus first, then the focus', async (t) => {
  const b = notificationBundle({ ...STATUS, eventsSinceStart: '7' }, [
    { number: '7', timestamp: new Date(0), type: 'Observation', id: 'o1', version: 2, deleted: false },
  ]);
  t.equal(b.type, 'history');
  const status = b.entry![0].resource as { resourceType: string; meta: { profile: string[] }; parameter: { name: string }[] };
  t.equal(status.resourceType, 'Parameters');
  t.match(status.meta.profile[0], /backport-subscription-status-r4$/);
  t.same(
    status.parameter.map((p) => p.name),
    ['subscription', 'topic', 'status', 'type', 'events-since-subscription-start', 'notification-event'],
  );
  t.same(
    b.entry![1],
    { fullUrl: 'https://x/fhir/r4/Observation/o1', request: { method: 'PUT', url: 'Observation/o1' }, response: { status: '200' } },
    'id-only',
  );
});

t.test("interactions: creates and updates by default; Medplum's and HAPI FHIR's extensions", async (t) => {
  const SUPPORTED = 'https://medplum.com/fhir/StructureDefinition/subscription-supported-interaction';
  const DELETES = 'http://hapifhir.io/fhir/StructureDefinition/subscription-send-delete-messages';
  t.same(read(classic()).interactions, ['create', 'update']);
  t.same(read(classic({ extension: [{ url: DELETES, valueBoolean: true }] })).interactions, ['create', 'update', 'delete']);
  t.same(read(classic({ extension: [{ url: DELETES, valueBoolean: false }] })).interactions, ['create', 'update']);
  t.same(read(classic({ extension: [{ url: SUPPORTED, valueCode: 'create' }] })).interactions, ['create']);
  const naming = (...codes: string[]) => classic({ extension: codes.map((valueCode) => ({ url: SUPPORTED, valueCode })) });
  t.same(read(naming('delete', 'update')).interactions, ['update', 'delete'], 'each one named');
  t.match(read(naming('patch')).problem, /"patch" is not one of/);
  t.equal(read(classic()).hash, read(naming('create', 'update')).hash, 'the default named: the same definition');
  t.not(read(classic()).hash, read(classic({ extension: [{ url: DELETES, valueBoolean: true }] })).hash, 'deletes asked for: another');
});

t.test('a delete in a notification Bundle: its entry without the resource, request DELETE', async (t) => {
  const b = notificationBundle({ ...STATUS, eventsSinceStart: '8' }, [
    {
      number: '8',
      timestamp: new Date(0),
      type: 'Observation',
      id: 'o1',
      version: 3,
      deleted: true,
      resource: { resourceType: 'Observation' } as never,
    },
  ]);
  t.same(b.entry![1], {
    fullUrl: 'https://x/fhir/r4/Observation/o1',
    request: { method: 'DELETE', url: 'Observation/o1' },
    response: { status: '204' },
  });
});

t.test('Subscription.end: read as an instant; one that is not is the problem', async (t) => {
  t.equal(read(classic()).endsAt, null);
  t.equal(read(classic({ end: '2030-01-02T03:04:05Z' } as never)).endsAt?.toISOString(), '2030-01-02T03:04:05.000Z');
  t.equal(read(classic({ end: '2030-01-02T03:04:05Z' } as never)).wanted, 'requested', 'the dispatcher turns it off when the end comes');
  t.match(read(classic({ end: 'soon' } as never)).problem, /not an instant/);
  t.equal(read(classic()).hash, read(classic({ end: '2030-01-02T03:04:05Z' } as never)).hash, 'an end asks for no new activation');
});
