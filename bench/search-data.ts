/**
 * Data for bench/search.ts: about 1,000 resources a patient "in the shape of ../shared/synthea",
 * generated from the 40 Synthea bundles as templates, and loaded over HTTP as transactions.
 *
 * Patient i (0-based) is one transaction Bundle made from template i mod 40, and depends only on
 * (seed, i): reruns generate identical data, and a larger --patients extends a smaller set.
 *   - The template's Patient, Organization(s) and Practitioner(s) appear once (plain POSTs, as in
 *     Synthea); the Patient gets a family name drawn from the 2010 US Census surname frequencies
 *     (Smith 0.83% of people, then Johnson, Williams...; the rest from the surnames in the Synthea
 *     templates themselves), and an extra identifier urn:tributary:bench|<seed>-<i> (used to resume).
 *   - The template's clinical history (every other entry: Encounters, Observations, Claims, EOBs,
 *     Immunizations, DiagnosticReports, Conditions...) is copied k times, k chosen so that the
 *     patient has about 1,000 resources; copy c has its dates shifted back by 2c months (codes and
 *     values kept) and fresh uuids, its references pointing at its own copies (its Encounter, its
 *     Claim...) and at the patient's single Patient, Organization and Practitioner.
 *   So the mix of resource types stays Synthea's (about half Observations), not only Observations.
 * Every uuid in the template (fullUrls, ids, identifier values equal to them) is replaced by one
 * derived from (seed, i, copy, old uuid), so nothing collides between patients.
 *
 * The loader keeps what it loaded in <data-dir>/search-bench-state.json (patient index -> Patient
 * id) and, before sending a patient, looks it up by that identifier, so an interrupted load resumes
 * without duplicates.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';

type Json = Record<string, unknown>;
interface Entry {
  fullUrl: string;
  resource: Json;
  request: { method: string; url: string };
}
export interface Template {
  name: string;
  shared: Entry[];
  clinical: Entry[];
  uuids: string[];
  sharedUrls: Set<string>;
  clinicalPieces?: Piece[];
}

export const BENCH_IDENTIFIER_SYSTEM = 'urn:tributary:bench';
export const DEFAULT_SEED = 'tributary-search-1';
const SHARED_TYPES = new Set(['Patient', 'Organization', 'Practitioner']);
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
const FULL_DATE = /^(\d{4})-(\d{2})-(\d{2})(T.*)?$/;

/**
 * 2010 US Census surnames: the 50 most common, with people per 100,000 (Smith 828 = 0.83%).
 * A generated patient gets one of these with that probability (about 9.6% in all), else a surname
 * from the Synthea templates.
 */
const CENSUS_SURNAMES: [string, number][] = [
  ['Smith', 828],
  ['Johnson', 655],
  ['Williams', 551],
  ['Brown', 487],
  ['Jones', 483],
  ['Garcia', 395],
  ['Miller', 394],
  ['Davis', 378],
  ['Rodriguez', 371],
  ['Martinez', 359],
  ['Hernandez', 354],
  ['Lopez', 296],
  ['Gonzalez', 285],
  ['Wilson', 272],
  ['Anderson', 266],
  ['Thomas', 256],
  ['Taylor', 255],
  ['Moore', 246],
  ['Jackson', 240],
  ['Martin', 238],
  ['Lee', 235],
  ['Perez', 231],
  ['Thompson', 225],
  ['White', 224],
  ['Harris', 212],
  ['Sanchez', 208],
  ['Clark', 191],
  ['Ramirez', 189],
  ['Lewis', 180],
  ['Robinson', 180],
  ['Walker', 177],
  ['Young', 164],
  ['Allen', 164],
  ['King', 158],
  ['Wright', 156],
  ['Scott', 149],
  ['Torres', 148],
  ['Nguyen', 148],
  ['Hill', 147],
  ['Flores', 147],
  ['Green', 146],
  ['Adams', 145],
  ['Nelson', 144],
  ['Baker', 142],
  ['Hall', 138],
  ['Rivera', 133],
  ['Campbell', 131],
  ['Mitchell', 130],
  ['Carter', 128],
  ['Roberts', 128],
];

export function loadTemplates(dir: string): Template[] {
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort();
  if (files.length === 0) throw new Error(`No *.json bundles in ${dir}`);
  return files.map((f) => {
    const text = fs.readFileSync(path.join(dir, f), 'utf8');
    const bundle = JSON.parse(text) as { entry: Entry[] };
    const shared = bundle.entry.filter((e) => SHARED_TYPES.has(e.resource.resourceType as string));
    const clinical = bundle.entry.filter((e) => !SHARED_TYPES.has(e.resource.resourceType as string));
    if (shared.filter((e) => e.resource.resourceType === 'Patient').length !== 1) throw new Error(`${f}: expected one Patient`);
    return {
      name: f,
      shared,
      clinical,
      uuids: [...new Set(text.match(UUID) ?? [])],
      sharedUrls: new Set(shared.map((e) => e.fullUrl.replace(/^urn:uuid:/, ''))),
    };
  });
}

/** Surnames used by Synthea in the templates (patients, maiden names, practitioners), minus the census ones. */
function tailSurnames(templates: Template[]): string[] {
  const census = new Set(CENSUS_SURNAMES.map(([n]) => n));
  const names = new Set<string>();
  for (const t of templates) {
    for (const e of t.shared) {
      for (const n of (e.resource.name ?? []) as { family?: string }[])
        if (n.family && /^[A-Z][a-zà-ÿ]+$/.test(n.family) && !census.has(n.family)) names.add(n.family);
    }
  }
  return [...names].sort();
}

/** A 32-bit PRNG (mulberry32) seeded from a string. */
function rng(seed: string): () => number {
  let a = createHash('sha1').update(seed).digest().readUInt32LE(0);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uuidOf(key: string): string {
  const h = createHash('sha1').update(key).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16], 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** A full date (YYYY-MM-DD[Thh:mm...]) moved back by whole months; the day is kept where the month has it. */
function shiftDate(s: string, months: number): string {
  const m = FULL_DATE.exec(s);
  if (!m) return s;
  let y = Number(m[1]);
  let mo = Number(m[2]) - months;
  while (mo < 1) {
    mo += 12;
    y--;
  }
  const days = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  const d = Math.min(Number(m[3]), days);
  return `${String(y).padStart(4, '0')}-${String(mo).padStart(2, '0')}-${String(d).padStart(2, '0')}${m[4] ?? ''}`;
}

type Piece = string | { uuid?: string; date?: string };

/** The clinical entries serialized (without the array's brackets) and cut into text, uuids and dates (JSON strings that are a full date or dateTime). */
function cutClinical(entries: Entry[]): Piece[] {
  const json = JSON.stringify(entries).slice(1, -1);
  const pieces: Piece[] = [];
  const re = new RegExp(`(${UUID.source})|(?<=")(\\d{4}-\\d{2}-\\d{2}(?:T[^"]*)?)(?=")`, 'g');
  let last = 0;
  for (const m of json.matchAll(re)) {
    pieces.push(json.slice(last, m.index));
    pieces.push(m[1] ? { uuid: m[1] } : { date: m[2] });
    last = m.index + m[0].length;
  }
  pieces.push(json.slice(last));
  return pieces;
}

export interface GeneratedPatient {
  index: number;
  template: string;
  family: string;
  resources: number;
  /** The transaction Bundle, serialized. */
  body: string;
}

export interface Generator {
  templates: Template[];
  /** Patient `index` as a transaction Bundle: identical for the same (seed, index). */
  patient(index: number): GeneratedPatient;
  /** What patient `index` has, without generating it (for the bench's checks). */
  facts(index: number): PatientFacts;
}

export interface PatientFacts {
  /** Every word of the Patient's names (family, maiden family, given, prefix, suffix). */
  nameWords: string[];
  /** The LOINC codes of its Observations. */
  loincCodes: Set<string>;
  /** The latest effective date of its Observations (copy 0 keeps the template's dates). */
  latestObservation: string;
}

export function generator(templates: Template[], seed = DEFAULT_SEED, resourcesPerPatient = 1000): Generator {
  const tail = tailSurnames(templates);
  const pickFamily = (r: () => number): string => {
    let x = r() * 100_000;
    for (const [name, per100k] of CENSUS_SURNAMES) {
      if (x < per100k) return name;
      x -= per100k;
    }
    return tail[Math.floor(r() * tail.length)];
  };
  const names = (t: Template, r: () => number, family: string) => {
    const p = t.shared.find((e) => e.resource.resourceType === 'Patient')!.resource;
    const out = structuredClone((p.name ?? []) as { use?: string; family?: string; given?: string[]; prefix?: string[]; suffix?: string[] }[]);
    out.forEach((n, i) => {
      n.family = i === 0 || n.use !== 'maiden' ? family : pickFamily(r);
    });
    return out;
  };
  const templateFacts = new Map<Template, { loincCodes: Set<string>; latestObservation: string }>();
  return {
    templates,
    facts(index: number): PatientFacts {
      const t = templates[index % templates.length];
      const r = rng(`${seed}/${index}`);
      const n = names(t, r, pickFamily(r));
      if (!templateFacts.has(t)) {
        const obs = t.clinical.map((e) => e.resource).filter((x) => x.resourceType === 'Observation');
        const loincCodes = new Set(
          obs.flatMap((o) =>
            ((o.code as { coding?: { system?: string; code?: string }[] }).coding ?? [])
              .filter((c) => c.system === 'http://loinc.org')
              .map((c) => c.code!),
          ),
        );
        const latestObservation =
          obs
            .map((o) => (o.effectiveDateTime ?? '') as string)
            .sort()
            .pop() ?? '';
        templateFacts.set(t, { loincCodes, latestObservation });
      }
      return {
        nameWords: n.flatMap((x) => [x.family, ...(x.given ?? []), ...(x.prefix ?? []), ...(x.suffix ?? [])]).filter(Boolean) as string[],
        ...templateFacts.get(t)!,
      };
    },
    patient(index: number): GeneratedPatient {
      const t = templates[index % templates.length];
      const r = rng(`${seed}/${index}`);
      const family = pickFamily(r);
      const copies = Math.max(1, Math.round((resourcesPerPatient - t.shared.length) / Math.max(1, t.clinical.length)));
      const maps: Map<string, string>[] = [];
      const mapFor = (copy: number | 's') => {
        const key = copy === 's' ? 0 : copy + 1;
        if (!maps[key]) {
          const m = new Map<string, string>();
          for (const u of t.uuids) m.set(u, uuidOf(`${seed}/${index}/${t.sharedUrls.has(u) ? 's' : copy}/${u}`));
          maps[key] = m;
        }
        return maps[key];
      };
      const remap = (json: string, copy: number | 's'): string => {
        const m = mapFor(copy);
        return json.replace(UUID, (u) => m.get(u) ?? u);
      };
      // The Patient first: its response entry carries the new Patient's id.
      const parts: string[] = [];
      for (const e of [...t.shared].sort((a, b) => Number(b.resource.resourceType === 'Patient') - Number(a.resource.resourceType === 'Patient'))) {
        if (e.resource.resourceType !== 'Patient') {
          parts.push(remap(JSON.stringify(e), 's'));
          continue;
        }
        const out = JSON.parse(remap(JSON.stringify(e), 's')) as Entry;
        const p = out.resource;
        p.name = names(t, r, family);
        p.identifier = [...((p.identifier ?? []) as unknown[]), { system: BENCH_IDENTIFIER_SYSTEM, value: `${seed}-${index}` }];
        parts.push(JSON.stringify(out));
      }
      // The clinical entries, cut once per template into literal text, uuids and dates, then put
      // together per copy (much faster than a regular expression over 1.5 MB per copy).
      const pieces = (t.clinicalPieces ??= cutClinical(t.clinical));
      for (let c = 0; c < copies; c++) {
        const m = mapFor(c);
        let json = '';
        for (const piece of pieces) {
          if (typeof piece === 'string') json += piece;
          else if (piece.uuid) json += m.get(piece.uuid) ?? piece.uuid;
          else json += c > 0 ? shiftDate(piece.date!, 2 * c) : piece.date;
        }
        parts.push(json);
      }
      const resources = t.shared.length + copies * t.clinical.length;
      return { index, template: t.name, family, resources, body: `{"resourceType":"Bundle","type":"transaction","entry":[${parts.join(',')}]}` };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Loading

export interface LoadState {
  version: 1;
  seed: string;
  /** patient index -> Patient id, for every patient loaded. */
  patients: Record<string, string>;
  /** Resources loaded in all. */
  resources: number;
  /** Seconds spent loading, in all runs. */
  loadSeconds: number;
  /** Patients sent but not known to be loaded when the state was last written. */
  inflight: number[];
  /** The number of patients when VACUUM ANALYZE last ran. */
  analyzedAt: number;
}

const STATE_FILE = 'search-bench-state.json';

export function readState(dataDir: string | undefined, seed: string): LoadState {
  const empty: LoadState = { version: 1, seed, patients: {}, resources: 0, loadSeconds: 0, inflight: [], analyzedAt: 0 };
  if (!dataDir) return empty;
  try {
    const s = JSON.parse(fs.readFileSync(path.join(dataDir, STATE_FILE), 'utf8')) as LoadState;
    if (s.version !== 1 || s.seed !== seed) throw new Error(`${STATE_FILE} was written for seed ${s.seed}, not ${seed}: use a fresh --data-dir`);
    return s;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return empty;
    throw err;
  }
}

export function writeState(dataDir: string | undefined, s: LoadState): void {
  if (!dataDir) return;
  const file = path.join(dataDir, STATE_FILE);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(s));
  fs.renameSync(`${file}.tmp`, file);
}

const FHIR_HEADERS = { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' };

/** Patient ids of the given indexes already on the server (looked up by the bench identifier), 50 per search. */
async function findLoaded(base: string, seed: string, indexes: number[], headers: Record<string, string> = {}): Promise<Map<number, string>> {
  const found = new Map<number, string>();
  for (let i = 0; i < indexes.length; i += 50) {
    const chunk = indexes.slice(i, i + 50);
    const q = new URLSearchParams({
      identifier: chunk.map((n) => `${BENCH_IDENTIFIER_SYSTEM}|${seed}-${n}`).join(','),
      _count: '100',
      _elements: 'identifier',
    });
    const res = await fetch(`${base}/fhir/r4/Patient?${q}`, { headers: { ...FHIR_HEADERS, ...headers }, signal: AbortSignal.timeout(60_000) });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`looking up loaded patients: HTTP ${res.status} ${text.slice(0, 300)}`);
    for (const e of (JSON.parse(text).entry ?? []) as { resource: { id: string; identifier?: { system?: string; value?: string }[] } }[]) {
      const v = e.resource.identifier?.find((x) => x.system === BENCH_IDENTIFIER_SYSTEM)?.value;
      const m = v ? new RegExp(`^${seed.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-(\\d+)$`).exec(v) : null;
      if (m) found.set(Number(m[1]), e.resource.id);
    }
  }
  return found;
}

export interface LoadOptions {
  base: string;
  patients: number;
  seed: string;
  /** The data folder, where the state file is kept (none: every patient is looked up on the server). */
  dataDir?: string;
  concurrency: number;
  templatesDir: string;
  resourcesPerPatient?: number;
  log?: (line: string) => void;
  /**
   * With authentication (bench/search.ts --auth): the credentials patient i is written with (its
   * user's access token, so that its records are that user's), and those that look patients up
   * across users (the app's).
   */
  auth?: { writer(i: number): Promise<Record<string, string>>; reader: Record<string, string> };
}

export interface LoadResult {
  state: LoadState;
  /** Patients and resources loaded by this run, and how long that took. */
  loadedNow: { patients: number; resources: number; seconds: number };
}

/** Loads patients 0..patients-1 that are not loaded yet. Throws on the first failed transaction. */
export async function loadPatients(o: LoadOptions): Promise<LoadResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const state = readState(o.dataDir, o.seed);
  const gen = generator(loadTemplates(o.templatesDir), o.seed, o.resourcesPerPatient);
  // Anything not recorded as loaded may still be on the server (a run killed mid-transaction, or no state file).
  const unknown = Array.from({ length: o.patients }, (_, i) => i).filter((i) => !(i in state.patients));
  if (unknown.length) {
    const found = await findLoaded(o.base, o.seed, unknown, o.auth?.reader);
    for (const [i, id] of found) {
      state.patients[i] = id;
      // Resources of a patient found on the server but not recorded: count them as generated.
      state.resources += gen.patient(i).resources;
    }
    if (found.size) log(`found ${found.size} patient(s) already on the server that the state file did not record`);
  }
  state.inflight = [];
  writeState(o.dataDir, state);
  const todo = Array.from({ length: o.patients }, (_, i) => i).filter((i) => !(i in state.patients));
  const t0 = performance.now();
  const secondsBefore = state.loadSeconds;
  let next = 0;
  let doneNow = 0;
  let resourcesNow = 0;
  let failure: Error | undefined;
  const inflight = new Set<number>();
  const progress = () => {
    const secs = (performance.now() - t0) / 1000;
    const rate = resourcesNow / Math.max(secs, 0.001);
    const left = todo.length - doneNow;
    const eta = doneNow ? (left * secs) / doneNow : NaN;
    const fmt = (s: number) => (Number.isFinite(s) ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s` : '?');
    log(
      `loading: ${Object.keys(state.patients).length}/${o.patients} patients, ${state.resources.toLocaleString('en-US')} resources (${resourcesNow.toLocaleString('en-US')} this run, ${Math.round(rate).toLocaleString('en-US')} resources/s), elapsed ${fmt(secs)}, ETA ${fmt(eta)}`,
    );
  };
  const timer = todo.length ? setInterval(progress, 10_000) : undefined;
  try {
    await Promise.all(
      Array.from({ length: Math.min(o.concurrency, todo.length) }, async () => {
        while (next < todo.length && !failure) {
          const i = todo[next++];
          const p = gen.patient(i);
          inflight.add(i);
          state.inflight = [...inflight];
          writeState(o.dataDir, state);
          try {
            const headers = o.auth ? { ...FHIR_HEADERS, ...(await o.auth.writer(i)) } : FHIR_HEADERS;
            const res = await fetch(`${o.base}/fhir/r4`, { method: 'POST', headers, body: p.body, signal: AbortSignal.timeout(600_000) });
            const text = await res.text();
            if (res.status !== 200)
              throw new Error(
                `patient ${i} (${p.template}, ${p.resources} resources, ${(p.body.length / 1e6).toFixed(1)} MB): HTTP ${res.status} ${text.slice(0, 500)}`,
              );
            const entries = (JSON.parse(text).entry ?? []) as { response?: { status?: string; location?: string } }[];
            const bad = entries.filter((e) => !/^201/.test(e.response?.status ?? ''));
            const id = /(?:^|\/)Patient\/([^/]+)/.exec(entries[0]?.response?.location ?? '')?.[1];
            if (entries.length !== p.resources || bad.length || !id) {
              throw new Error(
                `patient ${i}: ${entries.length} response entries for ${p.resources}, ${bad.length} not 201, Patient location ${entries[0]?.response?.location}`,
              );
            }
            state.patients[i] = id;
            state.resources += p.resources;
            doneNow++;
            resourcesNow += p.resources;
          } catch (err) {
            failure ??= err as Error;
          } finally {
            inflight.delete(i);
            state.inflight = [...inflight];
            state.loadSeconds = secondsBefore + (performance.now() - t0) / 1000;
            writeState(o.dataDir, state);
          }
        }
      }),
    );
  } finally {
    if (timer) clearInterval(timer);
    const seconds = (performance.now() - t0) / 1000;
    if (todo.length) {
      state.loadSeconds = secondsBefore + seconds;
      writeState(o.dataDir, state);
      progress();
    }
  }
  if (failure) throw failure;
  return { state, loadedNow: { patients: doneNow, resources: resourcesNow, seconds: (performance.now() - t0) / 1000 } };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL of the embedded server (src/db/embedded.ts): user tributary, the password in
// <data-dir>/pg-password, a Unix socket in <data-dir>/pg named after the port it runs on (line 4
// of postmaster.pid).

export function pgConfigFor(dataDir: string): pg.ClientConfig {
  const password = fs.readFileSync(path.join(dataDir, 'pg-password'), 'utf8').trim();
  const port = Number(fs.readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[3]);
  return { host: path.join(dataDir, 'pg'), port, user: 'tributary', password, database: 'postgres', application_name: 'tributary-bench' };
}

export async function withPg<T>(config: pg.ClientConfig | string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client(typeof config === 'string' ? { connectionString: config } : config);
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}
