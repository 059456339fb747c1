/**
 * Bad input never hurts the server or the data: every malformed, mistyped or hostile request gets
 * the 4xx the FHIR HTTP spec names, with an OperationOutcome, in bounded time, and leaves the
 * database exactly as it was.
 * See: https://hl7.org/fhir/R4/http.html#Status-Codes
 */
import t, { type Test } from 'tap';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildTestApp, injectWithin } from '../helper.ts';

const app = await buildTestApp(t);
const BASE = '/fhir/r4';
const FHIR_JSON = 'application/fhir+json';
const JSON_PATCH = 'application/json-patch+json';
const REQUEST_TIMEOUT_MS = 15_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** One request, failing (instead of hanging the suite) when it takes longer than REQUEST_TIMEOUT_MS. */
const send = (a: FastifyInstance, opts: InjectOptions): Promise<LightMyRequestResponse> => injectWithin(a, opts, REQUEST_TIMEOUT_MS);

// --- The data the suite must not change --------------------------------------------------------

const created = await send(app, {
  method: 'POST',
  url: `${BASE}/Patient`,
  headers: { 'content-type': FHIR_JSON },
  payload: {
    resourceType: 'Patient',
    identifier: [{ system: 'urn:test:mrn', value: 'bad-input-1' }],
    active: true,
    name: [{ family: 'Robustness', given: ['Tess'] }],
    gender: 'female',
    birthDate: '1980-02-29',
  },
});
if (created.statusCode !== 201) throw new Error(`setup: Patient create answered ${created.statusCode}: ${created.body}`);
const patient = created.json();
const PID: string = patient.id;

const createdObs = await send(app, {
  method: 'POST',
  url: `${BASE}/Observation`,
  headers: { 'content-type': FHIR_JSON },
  payload: {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
    subject: { reference: `Patient/${PID}` },
    effectiveDateTime: '2024-05-01T10:00:00Z',
    valueQuantity: { value: 72, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
  },
});
if (createdObs.statusCode !== 201) throw new Error(`setup: Observation create answered ${createdObs.statusCode}: ${createdObs.body}`);
const OID: string = createdObs.json().id;

const WATCHED = ['hfj_resource', 'hfj_res_ver', 'hfj_spidx_string', 'hfj_spidx_token', 'hfj_res_link'];

interface Snapshot {
  counts: Record<string, number>;
  rows: unknown[];
  current: Record<string, string>;
}

/** Row counts of every hfj_ table, every stored version, and the current JSON of the two resources. */
async function snapshot(a: FastifyInstance): Promise<Snapshot> {
  const tables = await a.pg.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'hfj\\_%' ORDER BY table_name`,
  );
  const counts: Record<string, number> = {};
  for (const { table_name: name } of tables.rows) {
    if (!/^hfj_[a-z_]+$/.test(name)) throw new Error(`unexpected table name ${name}`);
    const { rows } = await a.pg.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${name}`);
    counts[name] = rows[0].n;
  }
  const { rows } = await a.pg
    .query(/* SQL */ `SELECT r.res_type, r.fhir_id, r.res_ver::text, r.res_updated, r.res_deleted_at, r.hash_sha256, v.res_ver::text AS ver, v.res_text_vc
      FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id ORDER BY r.res_id, v.res_ver`);
  const current: Record<string, string> = {};
  for (const path of [`Patient/${PID}`, `Observation/${OID}`]) current[path] = (await send(a, { url: `${BASE}/${path}` })).body;
  return { counts, rows, current };
}

const before = await snapshot(app);
for (const table of WATCHED) {
  if (!(table in before.counts)) throw new Error(`setup: table ${table} is missing`);
}
if (before.counts.hfj_resource !== 2 || before.counts.hfj_res_link < 1 || before.counts.hfj_spidx_string < 1 || before.counts.hfj_spidx_token < 1) {
  throw new Error(`setup: unexpected counts ${JSON.stringify(before.counts)}`);
}

// --- Cases ---------------------------------------------------------------------------------------

interface Case {
  name: string;
  req: InjectOptions;
  /** The status the FHIR spec asks for (see the notes where the server's choice differs). */
  status: number;
  /** Extra checks on the response. */
  check?: (t: Test, res: LightMyRequestResponse) => void;
}

type Body = InjectOptions['payload'];
const post = (payload: Body, headers: Record<string, string | string[]> = {}, url = `${BASE}/Patient`): InjectOptions => ({
  method: 'POST',
  url,
  headers: { 'content-type': FHIR_JSON, ...headers },
  payload,
});
const put = (payload: Body, headers: Record<string, string | string[]> = {}, url = `${BASE}/Patient/${PID}`): InjectOptions => ({
  method: 'PUT',
  url,
  headers: { 'content-type': FHIR_JSON, ...headers },
  payload,
});
const patch = (payload: Body, headers: Record<string, string | string[]> = {}, url = `${BASE}/Patient/${PID}`): InjectOptions => ({
  method: 'PATCH',
  url,
  headers: { 'content-type': JSON_PATCH, ...headers },
  payload,
});
const transaction = (entry: unknown[], type = 'transaction'): InjectOptions => post({ resourceType: 'Bundle', type, entry }, {}, BASE);
const get = (url: string, headers: Record<string, string | string[]> = {}): InjectOptions => ({ method: 'GET', url, headers });

/** The stored Patient as a client would PUT it back (no meta), with changes. */
const current = (changes: Record<string, unknown> = {}) => ({ ...patient, meta: undefined, ...changes });
const newPatient = (changes: Record<string, unknown> = {}) => ({ resourceType: 'Patient', name: [{ family: 'Nobody' }], ...changes });

const MALFORMED_JSON: [string, string][] = [
  ['truncated', '{"resourceType":"Patient",'],
  ['trailing garbage', '{"resourceType":"Patient"} xyz'],
  ['single quotes', "{'resourceType':'Patient'}"],
  ['NaN', '{"resourceType":"Patient","multipleBirthInteger":NaN}'],
  ['a raw control character in a string', '{"resourceType":"Patient","name":[{"family":"a\u0001b"}]}'],
];
const NOT_AN_OBJECT: [string, string][] = [
  ['an array', '[{"resourceType":"Patient"}]'],
  ['an empty array', '[]'],
  ['a string', '"Patient"'],
  ['a number', '42'],
  ['null', 'null'],
  ['true', 'true'],
];
const INVALID_CONTENT: [string, Record<string, unknown>][] = [
  ['unknown element', { foo: 1 }],
  ['active as a string', { active: 'yes' }],
  ['birthDate as a number', { birthDate: 123 }],
  ['name as a string instead of an array', { name: 'x' }],
  ['gender outside its required binding', { gender: 'robot' }],
  ['an empty string', { gender: '' }],
  ['__proto__ as an element', JSON.parse('{"__proto__":{"active":true}}')],
];

const deepArrays = (n: number) => `{"resourceType":"Patient","extension":${'['.repeat(n)}${']'.repeat(n)}}`;
const deepObjects = (n: number) => `{"resourceType":"Patient","extension":[${'{"extension":['.repeat(n)}${']}'.repeat(n)}]}`;
const invalidUtf8 = Buffer.concat([Buffer.from('{"resourceType":"Patient","name":[{"family":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')]);
const NUL_INDEXED = '{"resourceType":"Patient","name":[{"family":"Nul\\u0000Family"}]}';
const NUL_UNINDEXED = '{"resourceType":"Patient","extension":[{"url":"http://example.org/x","valueString":"a\\u0000b"}]}';
const NUL_IN_KEY = '{"resourceType":"Patient","extension":[{"url":"http://example.org/x","valueString":"ok","fo\\u0000o":1}]}';
const id65 = 'a'.repeat(65);
const toBase64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64');

const isUuidRequestId = (sent: string) => (t: Test, res: LightMyRequestResponse) => {
  const got = String(res.headers['x-request-id']);
  t.not(got, sent, 'the client-given request id is not echoed');
  t.match(got, UUID, 'the server made its own request id');
};

const cases: Record<string, Case[]> = {
  create: [
    ...MALFORMED_JSON.map(([name, body]): Case => ({ name: `malformed JSON: ${name}`, req: post(body), status: 400 })),
    { name: 'empty body', req: post(''), status: 400 },
    { name: 'whitespace body', req: post('  \n '), status: 400 },
    ...NOT_AN_OBJECT.map(([name, body]): Case => ({ name: `${name} instead of an object`, req: post(body), status: 400 })),
    {
      name: 'wrong resourceType (Observation to /Patient)',
      req: post({ resourceType: 'Observation', status: 'final', code: { text: 'x' } }),
      status: 400,
    },
    { name: 'missing resourceType', req: post({ name: [{ family: 'X' }] }), status: 400 },
    { name: 'resourceType not a string', req: post({ resourceType: ['Patient'] }), status: 400 },
    { name: 'unknown resource type in the URL', req: post(newPatient(), {}, `${BASE}/Foo`), status: 404 },
    { name: 'lower-case resource type in the URL', req: post(newPatient(), {}, `${BASE}/patient`), status: 404 },
    ...INVALID_CONTENT.map(([name, change]): Case => ({ name, req: post(JSON.stringify(newPatient(change))), status: 400 })),
    { name: 'deep nesting: 10,000 arrays', req: post(deepArrays(10_000)), status: 400 },
    { name: 'deep nesting: 10,000 objects', req: post(deepObjects(10_000)), status: 400 },
    { name: 'deep nesting: 100,000 arrays', req: post(deepArrays(100_000)), status: 400 },
    { name: 'invalid UTF-8 bytes (0xC3 0x28)', req: post(invalidUtf8), status: 400 },
    {
      name: 'lone UTF-8 continuation byte',
      req: post(Buffer.concat([Buffer.from('{"resourceType":"Patient","gender":"'), Buffer.from([0x80]), Buffer.from('"}')])),
      status: 400,
    },
    { name: 'NUL character in an indexed string', req: post(NUL_INDEXED), status: 400 },
    { name: 'NUL character in a string nothing indexes', req: post(NUL_UNINDEXED), status: 400 },
    { name: 'NUL character in a property name', req: post(NUL_IN_KEY), status: 400 },
    {
      name: 'Content-Type application/xml',
      req: post('<Patient xmlns="http://hl7.org/fhir"/>', { 'content-type': 'application/fhir+xml' }),
      status: 415,
    },
    { name: 'Content-Type text/plain', req: post(JSON.stringify(newPatient()), { 'content-type': 'text/plain' }), status: 415 },
    { name: 'no Content-Type', req: { method: 'POST', url: `${BASE}/Patient`, payload: Buffer.from(JSON.stringify(newPatient())) }, status: 415 },
    { name: 'Accept XML (checked before anything is stored)', req: post(newPatient(), { accept: 'application/fhir+xml' }), status: 406 },
    { name: '_format=xml (checked before anything is stored)', req: post(newPatient(), {}, `${BASE}/Patient?_format=xml`), status: 406 },
    { name: 'If-None-Exist: garbage', req: post(newPatient(), { 'if-none-exist': '!!!&&&===' }), status: 400 },
    { name: 'If-None-Exist: a parameter Patient does not have', req: post(newPatient(), { 'if-none-exist': 'bogus=1' }), status: 400 },
    { name: 'If-None-Exist: a malformed date', req: post(newPatient(), { 'if-none-exist': 'birthdate=yesterday' }), status: 400 },
    { name: 'If-None-Exist sent twice', req: post(newPatient(), { 'if-none-exist': ['identifier=a', 'identifier=b'] }), status: 400 },
    {
      name: 'Prefer: garbage (ignored; the body is what fails)',
      req: post(JSON.stringify(newPatient({ gender: 'robot' })), { prefer: 'return=;;;\u00ff' }),
      status: 400,
    },
    {
      name: 'X-Request-Id very long (ignored)',
      req: post('{', { 'x-request-id': 'r'.repeat(5000) }),
      status: 400,
      check: isUuidRequestId('r'.repeat(5000)),
    },
    {
      name: 'X-Request-Id with weird characters (ignored)',
      req: post('{', { 'x-request-id': '<script>"x"</script> ../../etc' }),
      status: 400,
      check: isUuidRequestId('<script>"x"</script> ../../etc'),
    },
    {
      name: 'Content-Type with an unknown charset',
      req: post(JSON.stringify(newPatient({ foo: 1 })), { 'content-type': 'application/fhir+json; charset=ebcdic-cp-us' }),
      status: 400,
    },
  ],

  update: [
    ...MALFORMED_JSON.map(([name, body]): Case => ({ name: `malformed JSON: ${name}`, req: put(body), status: 400 })),
    { name: 'empty body', req: put(''), status: 400 },
    ...NOT_AN_OBJECT.map(([name, body]): Case => ({ name: `${name} instead of an object`, req: put(body), status: 400 })),
    {
      name: 'wrong resourceType (Observation to /Patient)',
      req: put({ resourceType: 'Observation', id: PID, status: 'final', code: { text: 'x' } }),
      status: 400,
    },
    { name: 'missing resourceType', req: put({ id: PID, name: [{ family: 'X' }] }), status: 400 },
    { name: 'unknown resource type in the URL', req: put(current({ resourceType: 'Foo' }), {}, `${BASE}/Foo/${PID}`), status: 404 },
    { name: 'id in the body differs from the URL', req: put(current({ id: 'someone-else' })), status: 400 },
    { name: 'id in the body is a number', req: put(current({ id: 12 })), status: 400 },
    { name: 'no id in the body', req: put(current({ id: undefined })), status: 400 },
    { name: 'malformed id in the URL: bad$id', req: put(current({ id: 'bad$id' }), {}, `${BASE}/Patient/bad$id`), status: 400 },
    { name: 'malformed id in the URL: 65 characters', req: put(current({ id: id65 }), {}, `${BASE}/Patient/${id65}`), status: 400 },
    // URL parsing resolves the dot-segment before routing: PUT Patient/.. is PUT on the base, which has no route.
    { name: 'malformed id in the URL: ..', req: put(current({ id: '..' }), {}, `${BASE}/Patient/..`), status: 404 },
    { name: 'malformed id in the URL: %2E%2E', req: put(current({ id: '..' }), {}, `${BASE}/Patient/%2E%2E`), status: 404 },
    // ... and PUT Patient/. is PUT on the type without a condition.
    { name: 'malformed id in the URL: .', req: put(current({ id: '.' }), {}, `${BASE}/Patient/%2E`), status: 405 },
    {
      name: 'id .. in the body of a conditional update that creates',
      req: put(current({ id: '..' }), {}, `${BASE}/Patient?identifier=urn:test:mrn|nobody`),
      status: 400,
    },
    { name: 'malformed id in the URL: a space', req: put(current({ id: 'a b' }), {}, `${BASE}/Patient/a%20b`), status: 400 },
    ...INVALID_CONTENT.map(([name, change]): Case => ({ name, req: put(JSON.stringify(current(change))), status: 400 })),
    { name: 'deep nesting: 10,000 arrays', req: put(deepArrays(10_000)), status: 400 },
    { name: 'invalid UTF-8 bytes (0xC3 0x28)', req: put(invalidUtf8), status: 400 },
    { name: 'NUL character in a string', req: put(JSON.stringify(current({ name: [{ family: 'Nul\u0000Family' }] }))), status: 400 },
    {
      name: 'NUL character in a string nothing indexes',
      req: put(JSON.stringify(current({ extension: [{ url: 'http://example.org/x', valueString: 'a\u0000b' }] }))),
      status: 400,
    },
    { name: 'Content-Type application/xml', req: put('<Patient xmlns="http://hl7.org/fhir"/>', { 'content-type': 'application/xml' }), status: 415 },
    { name: 'Accept XML (checked before anything is stored)', req: put(current({ gender: 'male' }), { accept: 'application/xml' }), status: 406 },
    // RFC 7232 has no "malformed If-Match" status; a FHIR version ETag that does not parse is a bad request.
    { name: 'If-Match: abc', req: put(current({ gender: 'male' }), { 'if-match': 'abc' }), status: 400 },
    { name: 'If-Match: W/"x"', req: put(current({ gender: 'male' }), { 'if-match': 'W/"x"' }), status: 400 },
    { name: 'If-Match: an empty string', req: put(current({ gender: 'male' }), { 'if-match': '' }), status: 400 },
    { name: 'If-Match: a huge number', req: put(current({ gender: 'male' }), { 'if-match': `W/"${'9'.repeat(40)}"` }), status: 400 },
    { name: 'If-Match sent twice', req: put(current({ gender: 'male' }), { 'if-match': ['W/"1"', 'W/"2"'] }), status: 400 },
    { name: 'If-Match: a version that is not current', req: put(current({ gender: 'male' }), { 'if-match': 'W/"7"' }), status: 412 },
    {
      name: 'If-Match on a resource that does not exist',
      req: put(current({ id: 'not-there' }), { 'if-match': 'W/"1"' }, `${BASE}/Patient/not-there`),
      status: 412,
    },
    { name: 'PUT to the type without id or condition', req: put(current(), {}, `${BASE}/Patient`), status: 405 },
    { name: 'conditional update with an unknown parameter', req: put(current(), {}, `${BASE}/Patient?bogus=1`), status: 400 },
  ],

  patch: [
    { name: 'not an array', req: patch({ op: 'replace', path: '/active', value: false }), status: 400 },
    { name: 'an array of non-operations', req: patch([1, 'two', null]), status: 400 },
    { name: 'unknown op', req: patch([{ op: 'delete', path: '/active' }]), status: 400 },
    { name: 'malformed JSON', req: patch('[{"op":"replace",'), status: 400 },
    { name: 'empty body', req: patch(''), status: 400 },
    // RFC 5789 would also allow 409 or 422 for an op on a path that does not exist; the server says 400.
    { name: 'an op on a missing path', req: patch([{ op: 'replace', path: '/contact/5/name', value: {} }]), status: 400 },
    { name: 'remove of a missing element', req: patch([{ op: 'remove', path: '/deceasedBoolean' }]), status: 400 },
    {
      name: 'a test op that fails',
      req: patch([
        { op: 'test', path: '/gender', value: 'male' },
        { op: 'replace', path: '/active', value: false },
      ]),
      status: 422,
    },
    { name: 'a patch that changes the id', req: patch([{ op: 'replace', path: '/id', value: 'someone-else' }]), status: 400 },
    { name: 'a patch that changes the resourceType', req: patch([{ op: 'replace', path: '/resourceType', value: 'Group' }]), status: 400 },
    { name: 'a patch that makes the resource invalid', req: patch([{ op: 'replace', path: '/gender', value: 'robot' }]), status: 400 },
    {
      name: 'a patch that adds a NUL character',
      req: patch([{ op: 'add', path: '/extension', value: [{ url: 'http://example.org/x', valueString: 'a\u0000b' }] }]),
      status: 400,
    },
    { name: 'a patch that writes through __proto__', req: patch([{ op: 'add', path: '/__proto__/polluted', value: true }]), status: 400 },
    {
      name: 'wrong Content-Type (application/fhir+json)',
      req: patch([{ op: 'replace', path: '/active', value: false }], { 'content-type': FHIR_JSON }),
      status: 415,
    },
    { name: 'wrong Content-Type (application/xml)', req: patch('<diff/>', { 'content-type': 'application/xml' }), status: 415 },
    {
      name: 'deep nesting: 10,000 arrays',
      req: patch(`[{"op":"add","path":"/extension","value":${'['.repeat(10_000)}${']'.repeat(10_000)}}]`),
      status: 400,
    },
    { name: 'If-Match: abc', req: patch([{ op: 'replace', path: '/active', value: false }], { 'if-match': 'abc' }), status: 400 },
    {
      name: 'If-Match: a version that is not current',
      req: patch([{ op: 'replace', path: '/active', value: false }], { 'if-match': 'W/"9"' }),
      status: 412,
    },
    {
      name: 'a resource that does not exist',
      req: patch([{ op: 'replace', path: '/active', value: false }], {}, `${BASE}/Patient/not-there`),
      status: 404,
    },
    {
      name: 'unknown resource type in the URL',
      req: patch([{ op: 'replace', path: '/active', value: false }], {}, `${BASE}/Foo/${PID}`),
      status: 404,
    },
    { name: 'malformed id in the URL', req: patch([{ op: 'replace', path: '/active', value: false }], {}, `${BASE}/Patient/bad$id`), status: 400 },
  ],

  transaction: [
    ...MALFORMED_JSON.map(([name, body]): Case => ({ name: `malformed JSON: ${name}`, req: post(body, {}, BASE), status: 400 })),
    { name: 'empty body', req: post('', {}, BASE), status: 400 },
    ...NOT_AN_OBJECT.map(([name, body]): Case => ({ name: `${name} instead of a Bundle`, req: post(body, {}, BASE), status: 400 })),
    { name: 'a Patient instead of a Bundle', req: post(newPatient(), {}, BASE), status: 400 },
    { name: 'a Bundle of type collection', req: transaction([{ resource: newPatient() }], 'collection'), status: 400 },
    { name: 'a Bundle without type', req: post({ resourceType: 'Bundle', entry: [] }, {}, BASE), status: 400 },
    {
      name: 'Bundle.entry not an array',
      req: post({ resourceType: 'Bundle', type: 'transaction', entry: { resource: newPatient() } }, {}, BASE),
      status: 400,
    },
    { name: 'an entry that is null', req: transaction([null]), status: 400 },
    { name: 'an entry without request', req: transaction([{ resource: newPatient() }]), status: 400 },
    { name: 'request.method FOO', req: transaction([{ resource: newPatient(), request: { method: 'FOO', url: 'Patient' } }]), status: 400 },
    { name: 'request.method as a number', req: transaction([{ resource: newPatient(), request: { method: 1, url: 'Patient' } }]), status: 400 },
    { name: 'request.url missing', req: transaction([{ resource: newPatient(), request: { method: 'POST' } }]), status: 400 },
    {
      name: 'POST entry to Patient/123',
      req: transaction([{ resource: newPatient(), request: { method: 'POST', url: 'Patient/123' } }]),
      status: 400,
    },
    {
      name: 'entry resource of the wrong type',
      req: transaction([
        { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' } }, request: { method: 'POST', url: 'Patient' } },
      ]),
      status: 400,
    },
    { name: 'entry without resource', req: transaction([{ request: { method: 'POST', url: 'Patient' } }]), status: 400 },
    {
      name: 'entry with a malformed id',
      req: transaction([{ resource: newPatient({ id: 'bad$id' }), request: { method: 'PUT', url: 'Patient/bad$id' } }]),
      status: 400,
    },
    {
      name: 'entry with the id ..',
      req: transaction([{ resource: newPatient({ id: '..' }), request: { method: 'PUT', url: 'Patient/..' } }]),
      status: 400,
    },
    {
      name: 'entry with the id .',
      req: transaction([{ resource: newPatient({ id: '.' }), request: { method: 'PUT', url: 'Patient/.' } }]),
      status: 400,
    },
    {
      name: 'entry with a 65-character id',
      req: transaction([{ resource: newPatient({ id: id65 }), request: { method: 'PUT', url: `Patient/${id65}` } }]),
      status: 400,
    },
    // The spec does not say what an unknown type inside a transaction answers; the server says 404 as for the URL.
    {
      name: 'entry of an unknown type',
      req: transaction([{ resource: { resourceType: 'Foo' }, request: { method: 'POST', url: 'Foo' } }]),
      status: 404,
    },
    {
      name: 'entry whose resource id differs from request.url',
      req: transaction([{ resource: newPatient({ id: 'b' }), request: { method: 'PUT', url: 'Patient/a' } }]),
      status: 400,
    },
    {
      name: 'two entries on the same resource',
      req: transaction([
        { resource: newPatient({ id: 'twice' }), request: { method: 'PUT', url: 'Patient/twice' } },
        { resource: newPatient({ id: 'twice', gender: 'male' }), request: { method: 'PUT', url: 'Patient/twice' } },
      ]),
      status: 400,
    },
    {
      name: 'the last entry is invalid (nothing of the valid ones is stored)',
      req: transaction([
        {
          fullUrl: 'urn:uuid:6f1c4d1e-0000-4000-8000-000000000001',
          resource: newPatient({ name: [{ family: 'Rolledback' }] }),
          request: { method: 'POST', url: 'Patient' },
        },
        { resource: newPatient({ id: 'put-then-rollback' }), request: { method: 'PUT', url: 'Patient/put-then-rollback' } },
        {
          resource: {
            resourceType: 'Observation',
            status: 'final',
            code: { text: 'x' },
            subject: { reference: 'urn:uuid:6f1c4d1e-0000-4000-8000-000000000001' },
          },
          request: { method: 'POST', url: 'Observation' },
        },
        { resource: current({ gender: 'male' }), request: { method: 'PUT', url: `Patient/${PID}` } },
        { resource: newPatient({ gender: 'robot' }), request: { method: 'POST', url: 'Patient' } },
      ]),
      status: 400,
    },
    {
      name: 'a conditional reference that matches nothing',
      req: transaction([
        { resource: newPatient({ name: [{ family: 'Rolledback' }] }), request: { method: 'POST', url: 'Patient' } },
        {
          resource: {
            resourceType: 'Observation',
            status: 'final',
            code: { text: 'x' },
            subject: { reference: 'Patient?identifier=urn:test:mrn|nobody' },
          },
          request: { method: 'POST', url: 'Observation' },
        },
      ]),
      status: 412,
    },
    {
      name: 'a conditional reference with an unknown parameter',
      req: transaction([
        {
          resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient?bogus=1' } },
          request: { method: 'POST', url: 'Observation' },
        },
      ]),
      status: 400,
    },
    {
      name: 'entry ifMatch: abc',
      req: transaction([{ resource: current({ gender: 'male' }), request: { method: 'PUT', url: `Patient/${PID}`, ifMatch: 'abc' } }]),
      status: 400,
    },
    {
      name: 'entry ifMatch: a version that is not current',
      req: transaction([{ resource: current({ gender: 'male' }), request: { method: 'PUT', url: `Patient/${PID}`, ifMatch: 'W/"5"' } }]),
      status: 412,
    },
    {
      name: 'entry ifNoneExist with an unknown parameter',
      req: transaction([{ resource: newPatient(), request: { method: 'POST', url: 'Patient', ifNoneExist: 'bogus=1' } }]),
      status: 400,
    },
    {
      name: 'PATCH entry: a test op that fails',
      req: transaction([
        {
          resource: { resourceType: 'Binary', contentType: JSON_PATCH, data: toBase64([{ op: 'test', path: '/gender', value: 'male' }]) },
          request: { method: 'PATCH', url: `Patient/${PID}` },
        },
      ]),
      status: 422,
    },
    {
      name: 'PATCH entry: a patch that changes the id',
      req: transaction([
        {
          resource: { resourceType: 'Binary', contentType: JSON_PATCH, data: toBase64([{ op: 'replace', path: '/id', value: 'x' }]) },
          request: { method: 'PATCH', url: `Patient/${PID}` },
        },
      ]),
      status: 400,
    },
    {
      name: 'NUL character in an entry',
      req: post(
        `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":${NUL_UNINDEXED},"request":{"method":"POST","url":"Patient"}}]}`,
        {},
        BASE,
      ),
      status: 400,
    },
    {
      name: 'deep nesting: 10,000 arrays',
      req: post(`{"resourceType":"Bundle","type":"transaction","entry":${'['.repeat(10_000)}${']'.repeat(10_000)}}`, {}, BASE),
      status: 400,
    },
    {
      name: 'invalid UTF-8 bytes',
      req: post(
        Buffer.concat([
          Buffer.from('{"resourceType":"Bundle","type":"transaction","entry":[{"resource":'),
          invalidUtf8,
          Buffer.from(',"request":{"method":"POST","url":"Patient"}}]}'),
        ]),
        {},
        BASE,
      ),
      status: 400,
    },
    {
      name: 'Content-Type application/xml',
      req: post('<Bundle xmlns="http://hl7.org/fhir"/>', { 'content-type': 'application/fhir+xml' }, BASE),
      status: 415,
    },
    {
      name: 'Accept XML',
      req: post(
        { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: newPatient(), request: { method: 'POST', url: 'Patient' } }] },
        { accept: 'application/fhir+xml' },
        BASE,
      ),
      status: 406,
    },
  ],

  'reads and query parameters': [
    { name: 'unknown resource type', req: get(`${BASE}/Foo/1`), status: 404 },
    { name: 'unknown resource type search', req: get(`${BASE}/Foo`), status: 404 },
    { name: 'malformed id: bad$id', req: get(`${BASE}/Patient/bad$id`), status: 400 },
    { name: 'malformed id: 65 characters', req: get(`${BASE}/Patient/${id65}`), status: 400 },
    { name: 'malformed version id', req: get(`${BASE}/Patient/${PID}/_history/abc`), status: 400 },
    { name: 'Accept XML', req: get(`${BASE}/Patient/${PID}`, { accept: 'application/fhir+xml' }), status: 406 },
    { name: '_format=xml', req: get(`${BASE}/Patient/${PID}?_format=xml`), status: 406 },
    { name: 'search _count=-1', req: get(`${BASE}/Patient?_count=-1`), status: 400 },
    { name: 'search _count=abc', req: get(`${BASE}/Patient?_count=abc`), status: 400 },
    { name: 'search _count=1.5', req: get(`${BASE}/Patient?_count=1.5`), status: 400 },
    { name: 'search _summary=bogus', req: get(`${BASE}/Patient?_summary=bogus`), status: 400 },
    { name: 'search _elements=$$', req: get(`${BASE}/Patient?_elements=$$`), status: 400 },
    { name: 'read _summary=bogus', req: get(`${BASE}/Patient/${PID}?_summary=bogus`), status: 400 },
    { name: 'read _elements=$$', req: get(`${BASE}/Patient/${PID}?_elements=$$`), status: 400 },
    { name: 'read _summary twice', req: get(`${BASE}/Patient/${PID}?_summary=true&_summary=false`), status: 400 },
    { name: 'history _since=yesterday', req: get(`${BASE}/Patient/${PID}/_history?_since=yesterday`), status: 400 },
    { name: 'type history _since=yesterday', req: get(`${BASE}/Patient/_history?_since=yesterday`), status: 400 },
    { name: 'system history _since=2024-13-45', req: get(`${BASE}/_history?_since=2024-13-45T99:00:00Z`), status: 400 },
    { name: 'history _count=-1', req: get(`${BASE}/Patient/${PID}/_history?_count=-1`), status: 400 },
    { name: 'history _count twice', req: get(`${BASE}/Patient/${PID}/_history?_count=1&_count=2`), status: 400 },
    { name: 'history of a malformed id', req: get(`${BASE}/Patient/bad$id/_history`), status: 400 },
  ],
};

/** Requests with bad headers or parameters that the server must ignore (and answer normally). */
const ignored: Case[] = [
  { name: 'If-None-Match: garbage', req: get(`${BASE}/Patient/${PID}`, { 'if-none-match': 'garbage' }), status: 200 },
  { name: 'If-None-Match: W/"x"', req: get(`${BASE}/Patient/${PID}`, { 'if-none-match': 'W/"x"' }), status: 200 },
  // Repeated, it is a list of ETags (RFC 9110 section 13.1.2); one of them is current.
  { name: 'If-None-Match sent twice', req: get(`${BASE}/Patient/${PID}`, { 'if-none-match': ['W/"7"', 'W/"1"'] }), status: 304 },
  { name: 'If-Modified-Since: garbage date', req: get(`${BASE}/Patient/${PID}`, { 'if-modified-since': 'yesterday at noon' }), status: 200 },
  {
    name: 'If-Modified-Since: out-of-range date',
    req: get(`${BASE}/Patient/${PID}`, { 'if-modified-since': 'Mon, 45 Foo 99999 99:99:99 GMT' }),
    status: 200,
  },
  { name: 'If-Modified-Since: a number', req: get(`${BASE}/Patient/${PID}`, { 'if-modified-since': '1e400' }), status: 200 },
  { name: 'Prefer: garbage on a read', req: get(`${BASE}/Patient/${PID}`, { prefer: ';;;===return' }), status: 200 },
  {
    name: 'X-Request-Id very long on a read',
    req: get(`${BASE}/Patient/${PID}`, { 'x-request-id': 'r'.repeat(5000) }),
    status: 200,
    check: isUuidRequestId('r'.repeat(5000)),
  },
  { name: '_pretty=maybe', req: get(`${BASE}/Patient/${PID}?_pretty=maybe`), status: 200 },
  { name: 'search _pretty=maybe', req: get(`${BASE}/Patient?_pretty=maybe`), status: 200 },
  // The spec does not say which of two _count values wins; the server takes the first.
  { name: 'search _count twice', req: get(`${BASE}/Patient?_count=1&_count=2`), status: 200 },
  {
    // An update that changes nothing makes no version, so this checks the header without changing data.
    name: 'Prefer: garbage on an update that changes nothing',
    req: put(current(), { prefer: 'return=garbage; handling=???' }),
    status: 200,
    check: (t, res) => t.equal(res.json().meta?.versionId, '1', 'the representation is returned and no version made'),
  },
  {
    // The media type is clear; the server reads past parameters it cannot parse.
    name: 'Content-Type with unparsable parameters on an update that changes nothing',
    req: put(JSON.stringify(current()), { 'content-type': 'application/fhir+json;;;=="' }),
    status: 200,
  },
  {
    name: 'Content-Type with a weird charset on an update that changes nothing',
    req: put(JSON.stringify(current()), { 'content-type': 'application/fhir+json; charset="utf-8"; foo=bar' }),
    status: 200,
  },
];

/** The status, and an OperationOutcome body (its checks TODO when `bodyTodo` names a known bug). */
function checkOutcome(t: Test, res: LightMyRequestResponse, expected: number, bodyTodo?: string): void {
  t.ok(res.statusCode < 500, `no 5xx (got ${res.statusCode}: ${res.body.slice(0, 300)})`);
  t.equal(res.statusCode, expected, `status ${expected}: ${res.body.slice(0, 300)}`);
  const opts = bodyTodo ? { todo: bodyTodo } : {};
  t.match(String(res.headers['content-type']), /^application\/fhir\+json/, 'FHIR JSON', opts);
  let body: { resourceType?: string; issue?: { severity?: string; code?: string }[] } = {};
  try {
    body = JSON.parse(res.body);
  } catch {
    t.fail(`the body is not JSON: ${res.body.slice(0, 200)}`, opts);
    return;
  }
  t.equal(body.resourceType, 'OperationOutcome', 'an OperationOutcome', opts);
  t.ok(Array.isArray(body.issue) && body.issue.length >= 1, 'with at least one issue', opts);
  t.ok(
    body.issue?.every((i) => typeof i.severity === 'string' && typeof i.code === 'string'),
    'every issue has severity and code',
    opts,
  );
}

for (const [group, list] of Object.entries(cases)) {
  t.test(group, async (t) => {
    for (const c of list) {
      t.test(c.name, async (t) => {
        const res = await send(app, c.req);
        checkOutcome(t, res, c.status);
        c.check?.(t, res);
      });
    }
  });
}

t.test('ignored headers and parameters', async (t) => {
  for (const c of ignored) {
    t.test(c.name, async (t) => {
      const res = await send(app, c.req);
      t.equal(res.statusCode, c.status, res.body.slice(0, 300));
      c.check?.(t, res);
    });
  }
});

t.test('a body over the limit answers 413', async (t) => {
  const small = await buildTestApp(t, { bodyLimit: 100_000 });
  const big = JSON.stringify(newPatient({ name: [{ family: 'x'.repeat(200_000) }] }));
  const small0 = await small.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM hfj_res_ver');
  const reqs: [string, InjectOptions][] = [
    ['create', post(big)],
    ['update', put(big, {}, `${BASE}/Patient/big`)],
    ['patch', patch(`[{"op":"add","path":"/text","value":"${'x'.repeat(200_000)}"}]`, {}, `${BASE}/Patient/big`)],
    [
      'transaction',
      post(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":${big},"request":{"method":"POST","url":"Patient"}}]}`, {}, BASE),
    ],
    [
      'search by POST',
      {
        method: 'POST',
        url: `${BASE}/Patient/_search`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: `name=${'x'.repeat(200_000)}`,
      },
    ],
  ];
  for (const [name, req] of reqs) {
    t.test(name, async (t) => checkOutcome(t, await send(small, req), 413));
  }
  t.test('nothing was stored', async (t) => {
    const { rows } = await small.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM hfj_res_ver');
    t.equal(rows[0].n, small0.rows[0].n);
  });
});

t.test('the server still works, and the database is unchanged', async (t) => {
  const read = await send(app, { url: `${BASE}/Patient/${PID}` });
  t.equal(read.statusCode, 200);
  const after = await snapshot(app);
  t.same(after.counts, before.counts, 'same row counts in every hfj_ table');
  for (const table of WATCHED) t.equal(after.counts[table], before.counts[table], `${table} unchanged`);
  t.same(after.rows, before.rows, 'same resources and versions');
  t.same(after.current, before.current, 'same current JSON');
  t.equal((Object.prototype as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
});

/**
 * Cases that once failed (found by this suite): each runs on a database of its own, and must not
 * store anything there either.
 */
t.test('former bugs', async (t) => {
  const spare = await buildTestApp(t);
  const someone = await send(spare, post(newPatient()));
  const before = await spare.pg.query('SELECT count(*)::int AS n FROM hfj_res_ver');
  const fixed: Case[] = [
    { name: 'an impossible date (2023-02-30)', req: post(newPatient({ birthDate: '2023-02-30' })), status: 400 },
    {
      name: 'a transaction PATCH entry whose Binary data is not JSON',
      req: transaction([
        {
          resource: { resourceType: 'Binary', contentType: JSON_PATCH, data: Buffer.from('not json').toString('base64') },
          request: { method: 'PATCH', url: `Patient/${someone.json().id}` },
        },
      ]),
      status: 400,
    },
    { name: "an id longer than the router's maxParamLength (200)", req: get(`${BASE}/Patient/${'a'.repeat(300)}`), status: 414 },
    { name: 'a URL with broken percent-encoding', req: get(`${BASE}/Patient/%E0%A4%A`), status: 400 },
  ];
  for (const c of fixed) {
    t.test(c.name, async (t) => checkOutcome(t, await send(spare, c.req), c.status));
  }
  const after = await spare.pg.query('SELECT count(*)::int AS n FROM hfj_res_ver');
  t.equal(after.rows[0].n, before.rows[0].n, 'nothing stored');
});
