/**
 * The health-system directory, end to end. First, a first start as `npm start` runs it (the shipped
 * directory loads by itself): when the search answers, when the FHIR view is complete. Then a
 * server without the autoload, and `npx tributary directory import directory/lantern` beside it,
 * twice: a first import of the full Lantern set (67,645 rows), then a re-import with nothing
 * changed (the FHIR view of Organizations and Endpoints is part of each import); then one client
 * sends --searches name searches to `GET /connect/system/clinical` (one or two words of a random
 * organization name from the lists, as a person types them), and as many FHIR searches
 * `Organization?name=<words>&address-state=<its state>` with the app's credentials.
 * Prints the wall time of each import (the CLI process included), the searches' p50/p99, and one
 * JSON line.
 *
 *   npx node bench/directory.ts [--runs 1] [--searches 500]
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { quantile, REPO, round, spawnServer } from './server.ts';
import { stateOfZip } from '../src/directory/zip-states.ts';

const { values: args } = parseArgs({ options: { runs: { type: 'string', default: '1' }, searches: { type: 'string', default: '500' } } });
const runs = Math.min(10, Math.max(1, Math.floor(Number(args.runs)) || 1));
const TARGET = { firstImportS: 60, reimportS: 30, searchP50Ms: 20, searchP99Ms: 50 };
const searches = Math.min(100_000, Math.max(10, Math.floor(Number(args.searches)) || 500));
const ADMIN_KEY = `bench-${crypto.randomUUID()}`;
process.env.ADMIN_KEY = ADMIN_KEY;

function cliImport(
  dataDir: string,
  port: number,
): Promise<{ seconds: number; summary: { systems: number; added: number; updated: number; unchanged: number; fhirView: { written: number } } }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile(
      path.join(REPO, 'node_modules', '.bin', 'node'),
      [path.join(REPO, 'bin', 'tributary.ts'), 'directory', 'import', path.join(REPO, 'directory', 'lantern'), '--json'],
      { env: { ...process.env, TRIBUTARY_DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(port) }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve({ seconds: (performance.now() - t0) / 1000, summary: JSON.parse(stdout) }),
    );
  });
}

/** Search words as a person types them: the first word, or two, of organization names in the lists; with the zip's state. */
function searchTerms(n: number): { words: string; state: string | null }[] {
  const names: { words: string; state: string | null }[] = [];
  const dir = path.join(REPO, 'directory', 'lantern');
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.json'))) {
    for (const e of (
      JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { Endpoints: { OrganizationName?: string; OrganizationZipCode?: string }[] }
    ).Endpoints) {
      // Words as a person types them: letters and digits (the lists' commas and periods left out).
      const words = (e.OrganizationName ?? '').split(/[^\p{L}\p{N}'-]+/u).filter((w) => w.length >= 3);
      if (words.length) names.push({ words: words.slice(0, 1 + (names.length % 2)).join(' '), state: stateOfZip(e.OrganizationZipCode) });
    }
  }
  let seed = 7;
  return Array.from({ length: n }, () => names[(seed = (seed * 1103515245 + 12345) % 2 ** 31) % names.length]);
}

interface Latency {
  p50Ms: number;
  p99Ms: number;
  meanResults: number;
}

/** p50/p99 of one client sending a request per term (the first 50 unmeasured), and the mean count of results. */
async function latency(
  terms: { words: string; state: string | null }[],
  send: (term: { words: string; state: string | null }) => Promise<number>,
): Promise<Latency> {
  const lat: number[] = [];
  let results = 0;
  for (let i = 0; i < terms.length; i++) {
    const t0 = performance.now();
    const n = await send(terms[i]);
    if (i < 50) continue; // warm-up
    lat.push(performance.now() - t0);
    results += n;
  }
  lat.sort((a, b) => a - b);
  return { p50Ms: round(quantile(lat, 0.5), 2)!, p99Ms: round(quantile(lat, 0.99), 2)!, meanResults: round(results / lat.length, 1)! };
}

async function searchLatency(base: string): Promise<{ directory: Latency; fhir: Latency }> {
  const made = await fetch(`${base}/admin/apps`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench' }),
  });
  const { client_id, client_secret } = (await made.json()) as { client_id: string; client_secret: string };
  const terms = searchTerms(searches + 50);
  const get = async (url: string, headers: Record<string, string> = {}) => {
    const res = await fetch(url, { headers });
    if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status} ${await res.text()}`);
    return res.json();
  };
  const directory = await latency(
    terms,
    async (term) =>
      (
        (await get(
          `${base}/connect/system/clinical?client_id=${client_id}&client_secret=${client_secret}&query=${encodeURIComponent(term.words)}`,
        )) as unknown[]
      ).length,
  );
  const fhir = await latency(terms, async (term) => {
    const state = term.state ? `&address-state=${term.state}` : '';
    const bundle = (await get(`${base}/fhir/r4/Organization?name=${encodeURIComponent(term.words)}${state}`, {
      client_id,
      client_secret,
      'x-oneup-user-id': 'client',
    })) as { entry?: unknown[] };
    return bundle.entry?.length ?? 0;
  });
  return { directory, fhir };
}

/**
 * A first start with the shipped directory (DIRECTORY_AUTOLOAD): seconds from the spawn until the
 * server answers, until a directory search finds systems, and until the FHIR view holds every
 * Endpoint; and the latency of /healthz meanwhile (the server serves the rest while it loads).
 */
async function firstStart(): Promise<{ readyS: number; searchS: number; fhirViewS: number; healthP50Ms: number; healthMaxMs: number }> {
  const t0 = performance.now();
  process.env.DIRECTORY_AUTOLOAD = 'true';
  const server = await spawnServer(fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-directory-')), { remove: true });
  delete process.env.DIRECTORY_AUTOLOAD;
  const since = () => (performance.now() - t0) / 1000;
  try {
    const readyS = since();
    const made = await fetch(`${server.base}/admin/apps`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bench' }),
    });
    const { client_id, client_secret } = (await made.json()) as { client_id: string; client_secret: string };
    const health: number[] = [];
    let searchS = 0;
    for (;;) {
      const h0 = performance.now();
      if ((await fetch(`${server.base}/healthz`)).status !== 200) throw new Error('/healthz failed during the load');
      health.push(performance.now() - h0);
      const found = (await (
        await fetch(`${server.base}/connect/system/clinical?client_id=${client_id}&client_secret=${client_secret}&query=clinic`)
      ).json()) as unknown[];
      if (!searchS && found.length) searchS = since();
      const count = (await (await fetch(`${server.base}/fhir/r4/Endpoint?_summary=count`)).json()) as { total?: number };
      // The shipped lists' usable systems (their 30 private or loopback bases are rejected at import).
      if (count.total === 29071) break;
      if (since() > 300) throw new Error('the FHIR view was not complete after 300 s');
      await new Promise((r) => setTimeout(r, 200));
    }
    health.sort((a, b) => a - b);
    return {
      readyS: round(readyS, 2)!,
      searchS: round(searchS, 2)!,
      fhirViewS: round(since(), 2)!,
      healthP50Ms: round(quantile(health, 0.5), 2)!,
      healthMaxMs: round(health[health.length - 1], 2)!,
    };
  } finally {
    await server.stop();
  }
}

const start = await firstStart();
console.log(
  `first start (DIRECTORY_AUTOLOAD): the server answers after ${start.readyS} s, the directory search after ${start.searchS} s (target < 30 s), the FHIR view is complete after ${start.fhirViewS} s; /healthz meanwhile p50 ${start.healthP50Ms} ms, max ${start.healthMaxMs} ms`,
);

const results: { firstS: number; reimportS: number; systems: number; fhirResources: number; search: Awaited<ReturnType<typeof searchLatency>> }[] =
  [];
for (let i = 0; i < runs; i++) {
  const server = await spawnServer(fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-directory-')), { remove: true });
  try {
    // The CLI finds the server's embedded PostgreSQL through its data folder and port.
    const port = Number(fs.readFileSync(path.join(server.dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[3]);
    const first = await cliImport(server.dataDir, port);
    const again = await cliImport(server.dataDir, port);
    if (again.summary.added || again.summary.updated) throw new Error(`the re-import changed ${again.summary.added + again.summary.updated} systems`);
    const search = await searchLatency(server.base);
    results.push({
      firstS: round(first.seconds, 2)!,
      reimportS: round(again.seconds, 2)!,
      systems: first.summary.systems,
      fhirResources: first.summary.fhirView.written,
      search,
    });
    console.log(
      `run ${i + 1}: first import ${round(first.seconds, 2)} s (${first.summary.added} systems added, ${first.summary.fhirView.written} Organization and Endpoint resources; target < ${TARGET.firstImportS} s), re-import ${round(again.seconds, 2)} s (${again.summary.unchanged} unchanged; target < ${TARGET.reimportS} s)`,
    );
    console.log(
      `  name search, one client, ${searches} searches: p50 ${search.directory.p50Ms} ms, p99 ${search.directory.p99Ms} ms (targets ${TARGET.searchP50Ms} / ${TARGET.searchP99Ms} ms), ${search.directory.meanResults} results a page on average`,
    );
    console.log(
      `  FHIR Organization?name=&address-state=, one client: p50 ${search.fhir.p50Ms} ms, p99 ${search.fhir.p99Ms} ms, ${search.fhir.meanResults} results a page on average`,
    );
  } finally {
    await server.stop();
  }
}
console.log(JSON.stringify({ bench: 'directory', firstStart: start, runs: results, target: TARGET }));
