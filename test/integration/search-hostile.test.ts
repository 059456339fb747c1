/**
 * Hostile search input, in every position of a search: values, modifiers, chain names, _has,
 * _sort, _include, _count, _elements, repeated parameters. Each answer is a 400 with an
 * OperationOutcome or a correct 200 (exactly the rows that match: a bad value never returns
 * everything), never a 5xx, never a hang; and the stored data is the same afterwards.
 * See: https://hl7.org/fhir/R4/search.html#errors
 */
import t from 'tap';
import type { InjectOptions } from 'fastify';
import { buildTestApp, injectWithin } from '../helper.ts';
import { FHIR, type Json, entries, includeEntries, matchEntries, outcomeEntries, sorted, typedId, upsertAll } from './search-support.ts';

const app = await buildTestApp(t);
const TIMEOUT_MS = 10_000;

// --- The data the suite must not change ----------------------------------------------------------

await upsertAll(app, [
  { resourceType: 'Organization', id: 'ho1', name: 'Hostile Org' },
  {
    resourceType: 'Patient',
    id: 'h1',
    identifier: [{ system: 'urn:h', value: '1' }],
    name: [{ family: 'Hostile', given: ['Hana'] }],
    birthDate: '1980-01-01',
    managingOrganization: { reference: 'Organization/ho1' },
  },
  { resourceType: 'Patient', id: 'h2', identifier: [{ system: 'urn:h', value: '2' }], name: [{ family: 'Second' }], birthDate: '1990-06-15' },
  {
    resourceType: 'Observation',
    id: 'hobs',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: 'Patient/h1' },
    effectiveDateTime: '2024-05-01T10:00:00Z',
    valueQuantity: { value: 72, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
  },
]);

const ALL_PATIENTS = ['Patient/h1', 'Patient/h2'];
const ALL_OBS = ['Observation/hobs'];

/** Row counts of the resource tables (not a search cache, which searches may fill), every version, and two reads. */
async function snapshot(): Promise<Json> {
  const tables = await app.pg.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'hfj\\_%' ORDER BY table_name`,
  );
  const counts: Record<string, number> = {};
  for (const { table_name: name } of tables.rows) {
    if (!/^hfj_[a-z_]+$/.test(name)) throw new Error(`unexpected table name ${name}`);
    if (name.startsWith('hfj_search')) continue;
    counts[name] = (await app.pg.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${name}`)).rows[0].n;
  }
  const versions = (
    await app.pg.query(
      `SELECT r.res_type, r.fhir_id, r.res_ver::text, r.res_updated, r.res_deleted_at, v.res_ver::text AS ver, v.res_text_vc
        FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id ORDER BY r.res_type, r.fhir_id, v.res_ver`,
    )
  ).rows;
  const reads: Record<string, string> = {};
  for (const path of ['Patient/h1', 'Patient/h2', 'Observation/hobs', 'Organization/ho1'])
    reads[path] = (await injectWithin(app, { url: `${FHIR}/${path}` }, TIMEOUT_MS)).body;
  return { counts, versions, reads };
}
const before = await snapshot();
if (!before.counts.hfj_resource || before.counts.hfj_resource !== 4) throw new Error(`setup: unexpected counts ${JSON.stringify(before.counts)}`);

/** Cancels the queries still running in this file's database (left by a request that timed out). */
async function cancelRunningQueries(): Promise<number> {
  let cancelled = 0;
  let quiet = 0;
  // Until nothing has run for half a second (the server may still be sending what it built), at most 30 s.
  for (let i = 0; i < 300 && quiet < 5; i++) {
    const { rows } = await app.pg.query<{ n: number }>(
      `SELECT count(pg_cancel_backend(pid))::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'`,
    );
    cancelled += rows[0].n;
    quiet = rows[0].n === 0 ? quiet + 1 : 0;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return cancelled;
}

// --- Cases -----------------------------------------------------------------------------------------

interface Case {
  name: string;
  req: InjectOptions;
  /** The matches ("Type/id") of a correct 200. */
  matches: string[];
  /** Also correct: these matches, when the Bundle reports the parameter as ignored (an entry with search.mode outcome). */
  ignorable?: string[];
  /** A 200 may hold any subset of `matches` (a page of them), each once. */
  subset?: boolean;
  /** Most entries a 200 may hold. */
  maxEntries?: number;
  /** Resources a 200 may include (search.mode include); none when absent. */
  includes?: string[];
  /** Also correct, as it is. */
  alternative?: string[];
  /** Accepted statuses (default 200 and 400). */
  status?: number[];
}

const enc = encodeURIComponent;
/** A GET of `type` with the parameters encoded as given (raw: already encoded). */
const get = (type: string, params: [string, string][], headers: Record<string, string> = {}): InjectOptions => ({
  method: 'GET',
  url: `${FHIR}${type ? `/${type}` : ''}?${params.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&')}`,
  headers,
});
const raw = (pathAndQuery: string): InjectOptions => ({ method: 'GET', url: `${FHIR}/${pathAndQuery}` });
const postSearch = (type: string, body: string): InjectOptions => ({
  method: 'POST',
  url: `${FHIR}/${type}/_search`,
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  payload: body,
});
const times = (n: number, pair: [string, string]): [string, string][] => Array.from({ length: n }, () => pair);

const SQL1 = "' OR 1=1 --";
const SQL2 = '"; DROP TABLE hfj_resource; --';
const SQL3 = "' OR '1'='1";
const HUGE = 'a'.repeat(100_000);
const DEEP_CHAIN = `subject:Patient.organization${'.partof'.repeat(20)}.name`;
const DEEP_HAS = `${'_has:Observation:patient:'.repeat(20)}code`;
const LOTS_OF_KEYS = Array.from({ length: 1000 }, (_, i) => (i % 2 ? 'family' : '-birthdate')).join(',');

const CASES: Case[] = [
  // Values of known parameters: valid strings that match nothing, or invalid values (400).
  { name: 'string value: SQL', req: get('Patient', [['family', SQL1]]), matches: [] },
  { name: 'string value: DROP TABLE', req: get('Patient', [['family', SQL2]]), matches: [] },
  { name: 'string value: quote games', req: get('Patient', [['name', SQL3]]), matches: [] },
  { name: 'string :exact value: SQL', req: get('Patient', [['family:exact', SQL1]]), matches: [] },
  { name: 'string :contains value: SQL', req: get('Patient', [['family:contains', SQL1]]), matches: [] },
  { name: 'string value: a LIKE wildcard %', req: get('Patient', [['family', '%']]), matches: [] },
  { name: 'string value: a LIKE wildcard _', req: get('Patient', [['family', '_']]), matches: [] },
  { name: 'string :contains value: %', req: get('Patient', [['family:contains', '%']]), matches: [] },
  { name: 'string :contains value: _', req: get('Patient', [['family:contains', '_']]), matches: [] },
  { name: 'string value: H% (a wildcard after a real prefix)', req: get('Patient', [['family', 'H%ile']]), matches: [] },
  { name: 'string value: a dangling backslash', req: get('Patient', [['family', '\\']]), matches: [] },
  // Empty values: HAPI ignores a parameter whose values are all empty, so everything matching the rest is correct too.
  { name: 'string value: only commas', req: get('Patient', [['family', ',,,']]), matches: [], alternative: ALL_PATIENTS },
  { name: 'string value: empty', req: get('Patient', [['family', '']]), matches: [], alternative: ALL_PATIENTS },
  { name: 'token value: SQL in the system', req: get('Patient', [['identifier', `${SQL1}|1`]]), matches: [] },
  { name: 'token value: SQL in the code', req: get('Patient', [['identifier', `urn:h|${SQL1}`]]), matches: [] },
  { name: 'token value: only bars', req: get('Patient', [['identifier', '|||']]), matches: [] },
  { name: '_id: SQL', req: get('Patient', [['_id', SQL1]]), matches: [] },
  { name: '_id: a real id then SQL', req: get('Patient', [['_id', `h1${SQL3}`]]), matches: [] },
  { name: 'date: month 13, day 45', req: get('Patient', [['birthdate', '2024-13-45']]), matches: [] },
  { name: 'date: February 30', req: get('Patient', [['birthdate', '1980-02-30']]), matches: [] },
  { name: 'date: SQL', req: get('Patient', [['birthdate', SQL1]]), matches: [] },
  { name: 'date: an unknown prefix', req: get('Patient', [['birthdate', 'xx1980']]), matches: [] },
  { name: 'date: a misspelled prefix', req: get('Patient', [['birthdate', 'gtt1980']]), matches: [] },
  { name: 'date: a prefix and nothing', req: get('Patient', [['birthdate', 'ge']]), matches: [] },
  { name: 'date: a five-digit year', req: get('Patient', [['birthdate', '99999-01-01']]), matches: [] },
  { name: 'date: 25:61', req: get('Patient', [['birthdate', '1980-01-01T25:61:00Z']]), matches: [] },
  { name: 'date: offset +99:99', req: get('Observation', [['date', '2024-05-01T10:00:00+99:99']]), matches: [] },
  { name: '_lastUpdated: SQL after a prefix', req: get('Patient', [['_lastUpdated', `ge${SQL1}`]]), matches: [] },
  { name: '_lastUpdated: month 13', req: get('Patient', [['_lastUpdated', '2024-13-45']]), matches: [] },
  { name: 'quantity: letters', req: get('Observation', [['value-quantity', 'abc']]), matches: [] },
  { name: 'quantity: NaN', req: get('Observation', [['value-quantity', 'NaN']]), matches: [] },
  { name: 'quantity: Infinity', req: get('Observation', [['value-quantity', 'Infinity']]), matches: [] },
  { name: 'quantity: 1e999999', req: get('Observation', [['value-quantity', '1e999999']]), matches: [] },
  { name: 'quantity: 1e-999999', req: get('Observation', [['value-quantity', '1e-999999']]), matches: [] },
  { name: 'quantity: ap1e308', req: get('Observation', [['value-quantity', 'ap1e308']]), matches: [] },
  { name: 'quantity: 5000 digits', req: get('Observation', [['value-quantity', '9'.repeat(5000)]]), matches: [] },
  { name: 'quantity: an unknown prefix', req: get('Observation', [['value-quantity', 'zz72']]), matches: [] },
  { name: 'quantity: --72', req: get('Observation', [['value-quantity', '--72']]), matches: [] },
  { name: 'quantity: hex', req: get('Observation', [['value-quantity', '0x48']]), matches: [] },
  { name: 'quantity: SQL as the system', req: get('Observation', [['value-quantity', `72|${SQL1}|/min`]]), matches: [] },
  { name: 'composite: only dollars', req: get('Observation', [['code-value-quantity', '$$$']]), matches: [] },
  { name: 'composite: too many parts', req: get('Observation', [['code-value-quantity', 'a$b$c$d']]), matches: [] },
  { name: 'composite: SQL as the value', req: get('Observation', [['code-value-quantity', `http://loinc.org|8867-4$${SQL1}`]]), matches: [] },
  { name: 'reference: SQL as the id', req: get('Observation', [['subject', `Patient/${SQL1}`]]), matches: [] },
  { name: 'reference: a path', req: get('Observation', [['subject', '../../etc/passwd']]), matches: [] },
  { name: 'reference: SQL in an absolute URL', req: get('Observation', [['subject', `http://evil.example/${SQL3}`]]), matches: [] },
  { name: ':in with a javascript: URL', req: get('Observation', [['code:in', 'javascript:alert(1)']]), matches: [] },
  { name: ':in with an unknown ValueSet', req: get('Observation', [['code:in', 'http://no.such.example/ValueSet/x']]), matches: [] },
  // NUL and unicode.
  { name: 'string value: NUL', req: raw('Patient?family=%00'), matches: [] },
  { name: 'string value: a NUL inside', req: raw('Patient?family=Host%00ile'), matches: [] },
  { name: 'token value: NULs', req: raw('Patient?identifier=%00|%00'), matches: [] },
  { name: '_id: NUL', req: raw('Patient?_id=%00'), matches: [] },
  { name: 'string value: an emoji', req: raw('Patient?family=%F0%9F%92%A9'), matches: [] },
  { name: 'string value: invalid UTF-8', req: raw('Patient?family=%C3%28'), matches: [] },
  { name: 'string value: an encoded lone surrogate', req: raw('Patient?family=%ED%A0%80'), matches: [] },
  { name: 'string value: a right-to-left override', req: raw('Patient?family=%E2%80%AE'), matches: [] },
  { name: 'string value: broken percent-encoding', req: raw('Patient?family=%ZZ'), matches: [] },
  // Huge.
  { name: 'string value of 100 KB (GET)', req: get('Patient', [['family', HUGE]]), matches: [], status: [200, 400, 414] },
  { name: 'string value of 100 KB (POST _search)', req: postSearch('Patient', `family=${HUGE}`), matches: [] },
  { name: '_id of 100 KB (POST _search)', req: postSearch('Patient', `_id=${HUGE}`), matches: [] },
  { name: 'token value of 100 KB (POST _search)', req: postSearch('Patient', `identifier=urn:h|${HUGE}`), matches: [] },
  {
    name: 'an OR of 5001 values, one matching',
    req: postSearch('Patient', `family=${Array.from({ length: 5000 }, (_, i) => `x${i}`).join(',')},Hostile`),
    matches: ['Patient/h1'],
  },
  // Modifiers.
  { name: 'modifier: SQL', req: get('Patient', [[`family:${SQL1}`, 'x']]), matches: [], ignorable: ALL_PATIENTS },
  { name: 'modifier: empty', req: get('Patient', [['family:', 'x']]), matches: [], ignorable: ALL_PATIENTS },
  { name: 'modifier: two colons', req: get('Patient', [['family::', 'x']]), matches: [], ignorable: ALL_PATIENTS },
  { name: 'modifier: two modifiers', req: get('Patient', [['family:exact:contains', 'Hostile']]), matches: [], ignorable: ALL_PATIENTS },
  { name: 'modifier: :not:not', req: get('Patient', [['gender:not:not', 'male']]), matches: [], ignorable: ALL_PATIENTS },
  { name: 'modifier: :exact on a date', req: get('Patient', [['birthdate:exact', '1980']]), matches: [], ignorable: ALL_PATIENTS },
  { name: 'modifier: SQL on _id', req: get('Patient', [[`_id:${SQL1}`, 'h1']]), matches: [], ignorable: ALL_PATIENTS },
  { name: 'modifier: :missing=maybe', req: get('Patient', [['family:missing', 'maybe']]), matches: [], ignorable: ALL_PATIENTS },
  // Parameter names.
  { name: 'parameter name: SQL', req: get('Patient', [[SQL1, 'x']]), matches: [], ignorable: ALL_PATIENTS },
  { name: 'parameter name: DROP TABLE', req: get('Patient', [[SQL2, '1']]), matches: [], ignorable: ALL_PATIENTS },
  { name: 'parameter name: NUL', req: raw('Patient?%00=x'), matches: [], ignorable: ALL_PATIENTS },
  {
    name: 'parameter name: SQL, with handling=strict',
    req: get('Patient', [[SQL1, 'x']], { prefer: 'handling=strict' }),
    matches: [],
    status: [400],
  },
  { name: 'POST _search body without =', req: postSearch('Patient', SQL1), matches: [], ignorable: ALL_PATIENTS },
  // Chains and _has.
  { name: 'chain: SQL as the type', req: get('Observation', [[`subject:${SQL1}.name`, 'x']]), matches: [], ignorable: ALL_OBS },
  { name: 'chain: SQL as the parameter', req: get('Observation', [[`subject.${SQL2}`, 'x']]), matches: [], ignorable: ALL_OBS },
  { name: 'chain: NUL as the parameter', req: raw('Observation?subject:Patient.%00=x'), matches: [], ignorable: ALL_OBS },
  { name: 'chain: an unknown type', req: get('Observation', [['subject:Foo.name', 'x']]), matches: [], ignorable: ALL_OBS },
  { name: 'chain: through a string', req: get('Observation', [['patient.name.name', 'x']]), matches: [], ignorable: ALL_OBS },
  { name: 'chain: 20 x partof', req: get('Observation', [[DEEP_CHAIN, 'x']]), matches: [] },
  { name: 'chain: 50 x subject', req: get('Observation', [[`${'subject.'.repeat(50)}name`, 'x']]), matches: [], ignorable: ALL_OBS },
  {
    name: 'chain: the real one still works',
    req: get('Observation', [['subject:Patient.organization.name', 'Hostile Org']]),
    matches: ['Observation/hobs'],
  },
  { name: '_has: no parts', req: get('Patient', [['_has', 'x']]), matches: [], ignorable: ALL_PATIENTS },
  { name: '_has: unknown type and parameters', req: get('Patient', [['_has:Foo:bar:baz', 'x']]), matches: [], ignorable: ALL_PATIENTS },
  { name: '_has: no search parameter', req: get('Patient', [['_has:Observation:patient', 'x']]), matches: [], ignorable: ALL_PATIENTS },
  { name: '_has: SQL as the reference', req: get('Patient', [[`_has:Observation:${SQL1}:code`, 'x']]), matches: [], ignorable: ALL_PATIENTS },
  { name: '_has: SQL as the value', req: get('Patient', [['_has:Observation:patient:code', SQL1]]), matches: [] },
  { name: '_has: 20 levels', req: get('Patient', [[DEEP_HAS, 'x']]), matches: [] },
  // _sort: a 200 holds all the matches (order aside).
  { name: '_sort: an unknown parameter', req: get('Patient', [['_sort', 'nonexistent']]), matches: ALL_PATIENTS },
  { name: '_sort: SQL', req: get('Patient', [['_sort', SQL1]]), matches: ALL_PATIENTS },
  { name: '_sort: a statement', req: get('Patient', [['_sort', 'family;DROP TABLE hfj_resource']]), matches: ALL_PATIENTS },
  { name: '_sort: a lone minus', req: get('Patient', [['_sort', '-']]), matches: ALL_PATIENTS },
  { name: '_sort: commas', req: get('Patient', [['_sort', ',,,']]), matches: ALL_PATIENTS },
  { name: '_sort: NUL', req: raw('Patient?_sort=%00'), matches: ALL_PATIENTS },
  { name: '_sort: 1000 keys', req: get('Patient', [['_sort', LOTS_OF_KEYS]]), matches: ALL_PATIENTS },
  { name: '_sort: a chain', req: get('Patient', [['_sort', 'organization.name']]), matches: ALL_PATIENTS },
  // _include and _revinclude: a 200 holds all the matches, and includes only what they refer to.
  { name: '_include: an unknown type', req: get('Patient', [['_include', 'Foo:bar']]), matches: ALL_PATIENTS },
  { name: '_include: *:*', req: get('Patient', [['_include', '*:*']]), matches: ALL_PATIENTS, includes: ['Organization/ho1'] },
  { name: '_include: SQL', req: get('Patient', [['_include', `Patient:${SQL1}`]]), matches: ALL_PATIENTS },
  { name: '_include: an unknown target type', req: get('Patient', [['_include', 'Patient:organization:Foo']]), matches: ALL_PATIENTS },
  { name: '_include: another type', req: get('Patient', [['_include', 'Observation:subject']]), matches: ALL_PATIENTS },
  { name: '_revinclude: an unknown target type', req: get('Patient', [['_revinclude', 'Observation:subject:Foo']]), matches: ALL_PATIENTS },
  {
    name: '_include:iterate=* with _revinclude:iterate=* (cycles)',
    req: get('Patient', [
      ['_include:iterate', '*'],
      ['_revinclude:iterate', '*'],
    ]),
    matches: ALL_PATIENTS,
    includes: ['Organization/ho1', 'Observation/hobs'],
  },
  {
    name: '_include: 1000 times the same',
    req: get('Patient', times(1000, ['_include', 'Patient:organization'])),
    matches: ALL_PATIENTS,
    includes: ['Organization/ho1'],
  },
  // _count: a 200 holds a page of the matches.
  { name: '_count=-1', req: get('Patient', [['_count', '-1']]), matches: ALL_PATIENTS, subset: true },
  { name: '_count=abc', req: get('Patient', [['_count', 'abc']]), matches: ALL_PATIENTS, subset: true },
  { name: '_count=1.5', req: get('Patient', [['_count', '1.5']]), matches: ALL_PATIENTS, subset: true },
  { name: '_count=1e3', req: get('Patient', [['_count', '1e3']]), matches: ALL_PATIENTS, subset: true },
  { name: '_count=0x10', req: get('Patient', [['_count', '0x10']]), matches: ALL_PATIENTS, subset: true },
  { name: '_count=SQL', req: get('Patient', [['_count', SQL1]]), matches: ALL_PATIENTS, subset: true },
  { name: '_count=NUL', req: raw('Patient?_count=%00'), matches: ALL_PATIENTS, subset: true },
  { name: '_count=100000 (clamped or refused)', req: get('Patient', [['_count', '100000']]), matches: ALL_PATIENTS, subset: true, maxEntries: 1000 },
  {
    name: '_count=99999999999999999999',
    req: get('Patient', [['_count', '99999999999999999999']]),
    matches: ALL_PATIENTS,
    subset: true,
    maxEntries: 1000,
  },
  {
    name: '_count twice',
    req: get('Patient', [
      ['_count', '1'],
      ['_count', '2'],
    ]),
    matches: ALL_PATIENTS,
    subset: true,
  },
  // _elements, _summary, _total.
  { name: '_elements=<script>', req: get('Patient', [['_elements', '<script>alert(1)</script>']]), matches: ALL_PATIENTS },
  { name: '_elements=SQL', req: get('Patient', [['_elements', SQL1]]), matches: ALL_PATIENTS },
  { name: '_elements: 10000 names', req: get('Patient', [['_elements', 'name,'.repeat(10_000)]]), matches: ALL_PATIENTS },
  { name: '_summary=SQL', req: get('Patient', [['_summary', SQL1]]), matches: ALL_PATIENTS },
  { name: '_total=bogus', req: get('Patient', [['_total', 'bogus']]), matches: ALL_PATIENTS },
  // Repetition.
  { name: 'family=Hostile, (an empty alternative matches nothing more)', req: get('Patient', [['family', 'Hostile,']]), matches: ['Patient/h1'] },
  { name: 'family=,, (only empty alternatives)', req: get('Patient', [['family', ',,']]), matches: [], status: [400] },
  { name: 'family=Hostile 1000 times (AND)', req: get('Patient', times(1000, ['family', 'Hostile'])), matches: ['Patient/h1'] },
  { name: 'family=x 1000 times (AND)', req: get('Patient', times(1000, ['family', 'x'])), matches: [] },
  { name: '_id=h1 1000 times (AND)', req: get('Patient', times(1000, ['_id', 'h1'])), matches: ['Patient/h1'] },
  { name: '_has 1000 times (AND)', req: get('Patient', times(1000, ['_has:Observation:patient:code', '8867-4'])), matches: ['Patient/h1'] },
  { name: 'a chain 1000 times (AND)', req: get('Observation', times(1000, ['subject:Patient.name', 'Hostile'])), matches: ['Observation/hobs'] },
  { name: 'a date 1000 times (AND)', req: get('Patient', times(1000, ['birthdate', 'lt1985'])), matches: ['Patient/h1'] },
  // Across types and compartments.
  { name: '_type with SQL', req: get('', [['_type', `Patient,${SQL1}`]]), matches: ALL_PATIENTS },
  { name: '_type: Patient 1000 times', req: get('', [['_type', Array.from({ length: 1000 }, () => 'Patient').join(',')]]), matches: ALL_PATIENTS },
  { name: 'compartment of SQL', req: raw(`Patient/${enc(SQL1)}/Observation`), matches: [], status: [200, 400, 404] },
  { name: 'compartment of an unknown type', req: raw('Patient/h1/Foo'), matches: [], status: [400, 404] },
];

t.test('hostile searches: a 400 with an OperationOutcome or a correct 200, never a 5xx, never a hang', async (t) => {
  const LEAK = /syntax error at or near|SQLSTATE|invalid byte sequence|violates|pg_catalog|relation "hfj_|node_modules|\bat .+\.ts:\d+/i;
  for (const c of CASES) {
    t.test(c.name, async (t) => {
      let res;
      try {
        res = await injectWithin(app, c.req, TIMEOUT_MS);
      } catch (err) {
        t.fail(`no answer: ${(err as Error).message}`);
        // Stop the query still running, so the next cases (and the file's end) do not wait for it.
        await cancelRunningQueries();
        return;
      }
      const allowed = c.status ?? [200, 400];
      t.ok(allowed.includes(res.statusCode), `status ${res.statusCode} is one of ${allowed.join(', ')} (${res.body.slice(0, 300)})`);
      t.notMatch(res.body, LEAK, 'no database error or stack trace in the answer');
      t.match(String(res.headers['content-type']), /^application\/fhir\+json/, 'FHIR JSON');
      let body: Json = {};
      try {
        body = res.json();
      } catch {
        t.fail(`the body is not JSON: ${res.body.slice(0, 200)}`);
        return;
      }
      if (res.statusCode !== 200) {
        t.equal(body.resourceType, 'OperationOutcome', 'an OperationOutcome');
        t.ok(Array.isArray(body.issue) && body.issue.length > 0, 'with an issue');
        return;
      }
      t.equal(body.resourceType, 'Bundle');
      t.equal(body.type, 'searchset');
      const got = sorted(matchEntries(body).map(typedId));
      t.equal(got.length, new Set(got).size, 'each match once');
      const included = includeEntries(body).map(typedId);
      t.same(
        included.filter((i) => !(c.includes ?? []).includes(i)),
        [],
        'nothing included that the matches do not refer to',
      );
      t.ok(
        entries(body).every((e) => ['match', 'include', 'outcome'].includes(e.search?.mode)),
        'every entry is a match, an include or an outcome',
      );
      if (c.maxEntries !== undefined) t.ok(matchEntries(body).length <= c.maxEntries, `at most ${c.maxEntries} entries`);
      if (c.subset) {
        t.same(
          got.filter((id) => !c.matches.includes(id)),
          [],
          'only resources that match',
        );
        return;
      }
      const ignored = c.ignorable !== undefined && outcomeEntries(body).length > 0 && JSON.stringify(got) === JSON.stringify(sorted(c.ignorable));
      if (c.alternative && JSON.stringify(got) === JSON.stringify(sorted(c.alternative))) {
        t.pass('an alternative correct answer');
        return;
      }
      if (ignored) {
        t.pass('the parameter was ignored, and the Bundle says so');
        return;
      }
      t.same(got, sorted(c.matches), 'exactly the resources that match');
    });
  }
});

t.test('the server still answers, and the stored data is unchanged', async (t) => {
  await cancelRunningQueries();
  const ok = await injectWithin(app, { url: `${FHIR}/Patient?family=hostile` }, TIMEOUT_MS);
  t.equal(ok.statusCode, 200);
  t.same(matchEntries(ok.json()).map(typedId), ['Patient/h1'], 'a plain search still works');
  const count = await injectWithin(app, { url: `${FHIR}/Patient?_summary=count` }, TIMEOUT_MS);
  t.equal(count.json().total, 2, 'still two Patients');
  const after = await snapshot();
  t.same(after.counts, before.counts, 'the same row counts in the resource and index tables');
  t.same(after.versions, before.versions, 'the same resources and versions');
  t.same(after.reads, before.reads, 'the same reads');
});
