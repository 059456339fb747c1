/**
 * The directory import: the full Lantern set (every distinct base URL once, with its
 * organizations, vendor and FHIR version), idempotent re-imports, the HTI-1 Bundle format (an
 * Oracle Health list, used as a test input only), CSV, rejected rows with reasons, and broken
 * files refused whole with the directory unchanged.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { buildTestApp, testConfig, testDatabase } from '../helper.ts';
import { buildApp } from '../../src/app.ts';
import { freePort } from '../pg.ts';
import { probeSystems } from '../../src/directory/probe.ts';
import { createOutbound } from '../../src/net/outbound.ts';
import { migrate } from '../../src/storage/migrate.ts';
import { importDirectory, normalizeUrl, systemId, type ImportSource } from '../../src/directory/importer.ts';
import { readDirectoryFile } from '../../src/directory/readers.ts';
import { stateOfZip } from '../../src/directory/zip-states.ts';
import { DirectoryIndexCache, editDistance, searchSystems, type SystemQuery } from '../../src/directory/search.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
const SHARED = path.resolve(REPO, '..', 'shared', 'directory');
// The shipped lists (directory/lantern, the same files as ../shared/directory/lantern).
const LANTERN = path.join(REPO, 'directory', 'lantern');
const lantern = (): ImportSource[] =>
  fs
    .readdirSync(LANTERN)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ name: f, content: fs.readFileSync(path.join(LANTERN, f), 'utf8') }));

const pool = new pg.Pool({ connectionString: await testDatabase(t), max: 4 });
t.teardown(() => pool.end());
await migrate(pool);
const count = async (sql: string) => Number((await pool.query(sql)).rows[0].n);

t.test('the Lantern set: 29,071 usable systems, each URL once with every organization; a re-import changes nothing', async (t) => {
  const first = await importDirectory(pool, lantern());
  t.equal(first.files, 156);
  t.equal(first.rows, 67645, 'every row read');
  // 29,117 distinct URLs as written; 17 rows are relative paths ("api/eyesite/R4"), rejected with
  // their reason, and a few written without a scheme or after stray characters are mended and
  // meet their https twins. 55 rows (30 distinct bases: 19 private IPv4 literals such as
  // 10.133.66.16 and 192.168.102.4, localhost, and 9 *.local names) point into a private network
  // and are rejected too: 29,101 bases less those 30.
  t.equal(first.rejected.length, 17 + 55);
  t.ok(
    first.rejected.every((r) => r.file.endsWith('.json') && /^Endpoints\[\d+\]$/.test(r.at)),
    'each rejected row says where',
  );
  t.equal(first.rejected.filter((r) => /not a URL: api\//.test(r.reason)).length, 17);
  const privateRows = first.rejected.filter((r) => /^a base on a (private, loopback or link-local address|local network name) \(/.test(r.reason));
  t.equal(privateRows.length, 55, 'each private base says why');
  t.equal(privateRows.filter((r) => /address \((10|172\.(1[6-9]|2\d|3[01])|192\.168)\./.test(r.reason)).length, 23, 'private IPv4 literals');
  t.equal(privateRows.filter((r) => /name \(localhost\)/.test(r.reason)).length, 5, 'localhost');
  t.equal(privateRows.filter((r) => /name \([a-z0-9.-]+\.local\)/.test(r.reason)).length, 27, '*.local names');
  t.equal(first.systems, 29071, 'one system per distinct base URL (trailing "/" trimmed, lower-cased)');
  t.equal(first.added, 29071);
  t.equal(await count('SELECT count(*) AS n FROM trb_system'), 29071);
  t.equal(
    await count(
      "SELECT count(*) AS n FROM trb_system WHERE resource_url ~* '^https?://(10\\.|192\\.168\\.|172\\.(1[6-9]|2[0-9]|3[01])\\.|localhost)|\\.local[:/]'",
    ),
    0,
    'no private base stored',
  );
  // A URL serving many organizations keeps them all.
  const many = await pool.query<{ n: string }>('SELECT count(*) AS n FROM trb_system_org GROUP BY system_id ORDER BY 1 DESC LIMIT 1');
  t.ok(Number(many.rows[0].n) > 1);
  const dstu2 = await pool.query("SELECT fhir_version, vendor FROM trb_system WHERE resource_url ILIKE '%/DSTU2%' LIMIT 1");
  t.equal(dstu2.rows[0].fhir_version, 'DSTU2');
  t.ok(dstu2.rows[0].vendor, 'the vendor comes from the list the URL was in');
  const again = await importDirectory(pool, lantern());
  t.same({ added: again.added, updated: again.updated, unchanged: again.unchanged }, { added: 0, updated: 0, unchanged: 29071 });
});

t.test('ids are short, stable and derived from the normalized URL', async (t) => {
  const n = normalizeUrl('HTTPS://FHIR.Example.ORG/api/FHIR/R4/');
  t.same(n, { url: 'HTTPS://FHIR.Example.ORG/api/FHIR/R4', normalized: 'https://fhir.example.org/api/fhir/r4' });
  const id = systemId((n as { normalized: string }).normalized);
  t.match(id, /^[0-9a-z]{1,10}$/);
  t.equal(id, systemId('https://fhir.example.org/api/fhir/r4'));
  t.not(id, systemId('https://fhir.example.org/api/fhir/r4/other'));
});

t.test("a zip's state: as the Oracle Health lists give them, for every organization with both", async (t) => {
  let compared = 0;
  for (const f of fs.readdirSync(path.join(SHARED, 'oracle-health'))) {
    for (const row of readDirectoryFile(f, fs.readFileSync(path.join(SHARED, 'oracle-health', f), 'utf8')).rows) {
      if (!row.state || !row.postalCode) continue;
      compared++;
      if (stateOfZip(row.postalCode) !== row.state.toUpperCase())
        t.fail(`${row.postalCode}: ${stateOfZip(row.postalCode)}, the list says ${row.state}`);
    }
  }
  t.ok(compared > 2000, `${compared} compared`);
  t.same(['55401-1234', '00901', '99501', '5540', '00000', 'ABCDE', null].map(stateOfZip), ['MN', 'PR', 'AK', null, null, null, null]);
});

t.test('HTI-1 Bundles (Endpoint + Organization), CSV, rejected rows, updates in place', async (t) => {
  const soarian = {
    name: 'soarian.json',
    content: fs.readFileSync(path.join(SHARED, 'oracle-health', 'soarian_patient_r4_endpoints.json'), 'utf8'),
    vendor: 'Oracle Health',
  };
  const r = await importDirectory(pool, [soarian]);
  t.equal(r.systems, 7, 'the seven Endpoints of the list');
  t.equal(r.rejected.length, 0);
  const org = await pool.query(
    "SELECT o.name, o.city, o.state FROM trb_system s JOIN trb_system_org o ON o.system_id = s.id WHERE s.vendor = 'Oracle Health' AND o.city IS NOT NULL LIMIT 1",
  );
  t.ok(org.rows[0]?.state, 'the Organization address comes along');

  const csv = (body: string): ImportSource => ({ name: 'list.csv', content: body, vendor: 'Acme EHR' });
  const made = await importDirectory(pool, [
    csv('url,name,npi,zip\nhttps://acme.example/fhir/r4,"Acme Clinic, North",1234567890,55401\n,No URL,,\nftp://acme.example/x,Wrong scheme,,\n'),
  ]);
  t.equal(made.added, 1);
  t.same(
    made.rejected.map((x) => x.at),
    ['line 3', 'line 4'],
  );
  t.match(made.rejected[1].reason, /not an http\(s\) URL/);
  const renamed = await importDirectory(pool, [csv('url,name,npi,zip\nhttps://acme.example/fhir/r4/,"Acme Clinic, South",1234567890,55401\n')]);
  t.same({ added: renamed.added, updated: renamed.updated }, { added: 0, updated: 1 }, 'the same URL (with a trailing "/") updates in place');
  t.equal((await pool.query("SELECT name FROM trb_system WHERE url_normalized = 'https://acme.example/fhir/r4'")).rows[0].name, 'Acme Clinic, South');
});

t.test('a broken file is refused whole and the directory stays as it was', async (t) => {
  const before = await count('SELECT count(*) AS n FROM trb_system');
  for (const broken of [
    { name: 'bad.json', content: '{"Endpoints": [' },
    { name: 'junk.bin', content: 'x'.repeat(50 * 1024 * 1024) },
    { name: 'wrong.json', content: '{"resourceType":"Patient"}' },
  ]) {
    await t.rejects(importDirectory(pool, [...lantern().slice(0, 3), broken]), { name: 'DirectoryFileError' }, broken.name);
  }
  t.equal(await count('SELECT count(*) AS n FROM trb_system'), before);
});

t.test('first start: the shipped directory loads in the background while the server answers', async (t) => {
  const app = await buildTestApp(t, { directoryAutoload: true });
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'the server answers at once');
  await app.directoryLoaded;
  t.equal(Number((await app.pg.query('SELECT count(*) AS n FROM trb_system')).rows[0].n), 29071);
  // A restart finds it filled and imports nothing.
  await app.pg.query("UPDATE trb_system SET name = 'Kept' WHERE id = (SELECT min(id) FROM trb_system)");
  const again = await buildApp(testConfig(app.config.databaseUrl!, { directoryAutoload: true }), { logger: false });
  t.teardown(() => again.close());
  await again.ready();
  await again.directoryLoaded;
  t.equal(Number((await again.pg.query("SELECT count(*) AS n FROM trb_system WHERE name = 'Kept'")).rows[0].n), 1);
});

t.test('CLI: directory import prints a summary with each rejected row; a broken file changes nothing and fails', async (t) => {
  const url = await testDatabase(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trb-dir-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'list.csv'), 'url,name\nhttps://x.example/fhir/R4,X Clinic\nnot a url,Bad\n');
  fs.writeFileSync(path.join(dir, 'broken.json'), '{"Endpoints": [');
  const cli = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        path.join(REPO, 'node_modules', '.bin', 'node'),
        [path.join(REPO, 'bin', 'tributary.ts'), 'directory', 'import', ...args],
        { env: { ...process.env, DATABASE_URL: url } },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  const ok = await cli(path.join(dir, 'list.csv'), '--vendor', 'X EHR', '--json');
  t.equal(ok.code, 0);
  const summary = JSON.parse(ok.stdout);
  t.same({ added: summary.added, rejected: summary.rejected.length }, { added: 1, rejected: 1 });
  t.match(summary.rejected[0], { file: 'list.csv', at: 'line 3', reason: /not a URL/ });
  const bad = await cli(path.join(dir, 'list.csv'), path.join(dir, 'broken.json'));
  t.equal(bad.code, 1);
  t.match(bad.stderr, /broken\.json: not JSON[\s\S]*Nothing was imported/);
});

t.test(
  "GET /connect/system/clinical: 1upHealth's shape; name words (accents, case, prefixes, a typo), places, NPI, vendor, version, URL",
  async (t) => {
    const app = await buildTestApp(t);
    await importDirectory(app.pg, [
      ...lantern().filter((s) => /^(Epic|Cerner|AthenaClinicals)/.test(s.name)),
      {
        name: 'mine.csv',
        vendor: 'Tributary Test',
        content:
          'url,name,npi,zip\nhttps://fhir.saint-elisabeth.example/R4,Hôpital Saint-Élisabeth,1999999999,55401\nhttps://fhir.mayo-like.example/api/DSTU2,Rochester Clinic North,,55905\n',
      },
    ]);
    const { app: client, clientSecret } = await app.auth.createApp({ name: 'Directory reader' });
    const get = async (query: string) => {
      const res = await app.inject({
        method: 'GET',
        url: `/connect/system/clinical?client_id=${client.clientId}&client_secret=${clientSecret}&${query}`,
      });
      t.equal(res.statusCode, 200, query);
      return res.json() as {
        id: string;
        name: string;
        resource_url: string;
        api_version: string | null;
        ehr: string | null;
        status: string;
        logo: null;
        locations: { name: string; address: { postalCode: string | null } }[];
      }[];
    };
    const accent = await get('query=hopital%20saint%20elis');
    t.equal(accent[0]?.name, 'Hôpital Saint-Élisabeth', 'accents and case do not matter; words are prefixes');
    t.same(Object.keys(accent[0]).sort(), ['api_version', 'ehr', 'id', 'locations', 'logo', 'name', 'resource_url', 'status']);
    t.same(
      accent[0].locations[0],
      { name: 'Hôpital Saint-Élisabeth', address: { line: null, city: null, postalCode: '55401', state: 'MN' } },
      'the state from the zip',
    );
    t.ok(
      (await get('query=saint%20elisabeth&state=mn')).some((s: { name: string }) => s.name === 'Hôpital Saint-Élisabeth'),
      'state= finds it',
    );
    t.same(await get('query=saint%20elisabeth%20hopital&state=TX'), []);
    t.equal((await get('query=hospital%20saint%20elisabet'))[0]?.name, 'Hôpital Saint-Élisabeth', 'a typo still finds it');
    t.equal((await get('npi=1999999999'))[0]?.name, 'Hôpital Saint-Élisabeth');
    t.ok(
      (await get('zip=55905')).some((x) => x.name === 'Rochester Clinic North'),
      "zip (a prefix of the organizations' zips)",
    );
    const dstu2 = await get('fhir_version=DSTU2&vendor=tributary');
    t.same(
      dstu2.map((x) => x.name),
      ['Rochester Clinic North'],
    );
    t.equal((await get('url=fhir.saint-elisabeth.example'))[0]?.ehr, 'Tributary Test');
    const athena = await get('vendor=athena');
    t.equal(athena.length, 1, "athenahealth's list is one URL serving every practice");
    t.equal(athena[0].locations.length, 20, 'with its organizations as locations (20 shown)');
    const page1 = await get('vendor=epic');
    const page2 = await get('vendor=epic&offset=20');
    t.equal(page1.length, 20, '20 a page');
    t.notOk(
      page2.some((x) => page1.some((y) => y.id === x.id)),
      'the next page repeats nothing',
    );
    t.same(await get('query=zzzzqqqq'), []);
    const noCreds = await app.inject({ method: 'GET', url: '/connect/system/clinical?query=x' });
    t.equal(noCreds.statusCode, 401);
    t.equal(
      (await app.inject({ method: 'GET', url: `/connect/system/clinical?client_id=${client.clientId}&client_secret=${clientSecret}&offset=-1` }))
        .statusCode,
      400,
    );
  },
);

t.test('search: words meet in one organization; ranking; every process sees an import at once', async (t) => {
  const p = new pg.Pool({ connectionString: await testDatabase(t), max: 4 });
  t.teardown(() => p.end());
  await migrate(p);
  const list = (rows: string[]): ImportSource => ({ name: 'ranking.csv', content: ['url,name,npi,zip', ...rows].join('\n') });
  await importDirectory(p, [
    list([
      // One URL serving two practices in two places.
      'https://many.example/fhir,Alpha Pediatrics,,10001',
      'https://many.example/fhir,Beta Cardiology,,94105',
      'https://one.example/fhir,North Clinic,,55401',
      'https://two.example/fhir,Clinic of the North,,55401',
      'https://three.example/fhir,Northfield Family Clinic Partners,,55057',
    ]),
  ]);
  const index = new DirectoryIndexCache(p);
  const names = async (text: string, extra: Partial<SystemQuery> = {}) =>
    (await searchSystems(p, index, { text, offset: 0, limit: 20, ...extra })).map((h) => h.name);
  t.same(await names('alpha pediatrics'), ['Alpha Pediatrics']);
  t.same(await names('alpha cardiology'), [], 'words of two different practices of one URL do not make a match');
  t.same(await names('beta cardiology 94105'), ['Alpha Pediatrics'], 'a practice found by name and zip shows its system');
  t.same(
    await names('north clinic'),
    ['North Clinic', 'Clinic of the North', 'Northfield Family Clinic Partners'],
    'starts with the words; then all words in the name, shorter first',
  );
  t.same(
    await names('clinic', { state: 'MN' }),
    ['Clinic of the North', 'North Clinic', 'Northfield Family Clinic Partners'],
    'starts with the word; then has it, shorter first',
  );
  t.same(await names('clinic', { state: 'MN', offset: 1 }), ['North Clinic', 'Northfield Family Clinic Partners'], 'offset pages through');
  t.same(await names('nrth clinc'), ['North Clinic', 'Clinic of the North', 'Northfield Family Clinic Partners'], 'a typo in each word');
  t.same(await names('zzzz'), []);
  // Another process (another pool) imports; this one's next search sees it.
  const other = new pg.Pool({ connectionString: (p as unknown as { options: { connectionString: string } }).options.connectionString, max: 1 });
  t.teardown(() => other.end());
  await importDirectory(other, [list(['https://four.example/fhir,Gamma North Hospital,,55401'])]);
  t.same(await names('gamma'), ['Gamma North Hospital']);
  t.same(
    [
      editDistance('clinic', 'clinc', 2),
      editDistance('clinic', 'cilnic', 2),
      editDistance('abc', 'xyz', 1),
      editDistance('pediatrics', 'pediatrics', 0),
    ],
    [1, 1, 2, 0],
    'edits: a deletion, a swap of neighbours; past the bound it stops at bound + 1',
  );
});

t.test('status probe: connection_working, no_smart, unreachable (local servers, retries on 503)', async (t) => {
  let flaky = 0;
  const server = http.createServer((req, res) => {
    const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    const cs = (oauth: boolean) => ({
      resourceType: 'CapabilityStatement',
      rest: [{ security: oauth ? { extension: [{ url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris' }] } : {} }],
    });
    if (req.url === '/smart/.well-known/smart-configuration') return json(200, { authorization_endpoint: 'https://x/authorize' });
    if (req.url === '/smart/metadata' || req.url === '/plain/metadata') return json(200, cs(false));
    if (req.url === '/oauth/metadata') return json(200, cs(true));
    // Busy twice, then fine: the retries with backoff reach it.
    if (req.url === '/flaky/metadata') return flaky++ < 2 ? json(503, {}) : json(200, cs(true));
    return json(404, {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const closed = `http://127.0.0.1:${await freePort()}`;
  const p = new pg.Pool({ connectionString: await testDatabase(t), max: 4 });
  t.teardown(() => p.end());
  await migrate(p);
  const urls = { smart: `${base}/smart`, oauth: `${base}/oauth`, plain: `${base}/plain`, flaky: `${base}/flaky`, gone: `${closed}/fhir` };
  const list = {
    name: 'local.csv',
    content: `url,name\n${Object.entries(urls)
      .map(([k, u]) => `${u},${k}`)
      .join('\n')}\n`,
  };
  t.same(
    (await importDirectory(p, [list])).rejected.map((r) => r.reason),
    Array(5).fill(`a base on a private, loopback or link-local address (127.0.0.1)`),
    'loopback bases are refused by default',
  );
  await importDirectory(p, [list], undefined, { allow: ['127.0.0.1'] });
  const outbound = createOutbound({ allow: ['127.0.0.1'] });
  t.teardown(() => outbound.close());
  // Without the operator's leave (no fetch given: a guarded one that allows nothing private), nothing answers.
  t.same(await probeSystems(p, { concurrency: 2, timeoutMs: 2000, attempts: 1, backoffMs: 20 }), {
    connection_working: 0,
    no_smart: 0,
    unreachable: 5,
  });
  t.equal(flaky, 0, 'not a request reached the server');
  const counts = await probeSystems(p, { concurrency: 2, timeoutMs: 2000, attempts: 3, backoffMs: 20, fetch: outbound.fetch });
  t.same(counts, { connection_working: 3, no_smart: 1, unreachable: 1 });
  const { rows } = await p.query<{ name: string; status: string; checked: boolean }>(
    'SELECT name, status, checked_at IS NOT NULL AS checked FROM trb_system ORDER BY name',
  );
  t.same(Object.fromEntries(rows.map((r) => [r.name, r.status])), {
    flaky: 'connection_working',
    gone: 'unreachable',
    oauth: 'connection_working',
    plain: 'no_smart',
    smart: 'connection_working',
  });
  t.ok(
    rows.every((r) => r.checked),
    'each status has the time it was checked',
  );
});
