/**
 * The sync, end to end: a server as `npm start` runs it, with its sandbox systems (patients with
 * SANDBOX_YEARS=20 of history, ~1,000 resources each) and its sync worker. For each of --patients
 * North Valley patients, one app user connects through the real flow (connect URL, the sandbox's
 * sign-in and consent, the callback), and the first sync runs at once; its duration (the run's
 * own start and finish, from GET /connect/connections) and counts are reported, then its p50 and
 * max, and one JSON line.
 *
 *   npx node bench/sync.ts [--patients 5]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { generateSystem } from '../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES } from '../src/sandbox/systems.ts';
import { benchApp, connectUser } from './connect.ts';
import { quantile, round, spawnServer } from './server.ts';

const { values: args } = parseArgs({ options: { patients: { type: 'string', default: '5' } } });
const YEARS = 20;
const TARGET_S = 5;
const NV = DEFAULT_SANDBOXES[0];
const patients = generateSystem({ seed: NV.seed, patients: NV.patients, idPrefix: NV.idPrefix, systemName: NV.title, years: YEARS }).patients;
const count = Math.min(patients.length, Math.max(1, Math.floor(Number(args.patients)) || 5));
const ADMIN_KEY = `bench-${crypto.randomUUID()}`;
Object.assign(process.env, { ADMIN_KEY, SANDBOXES: 'true', SANDBOX_YEARS: String(YEARS), SYNC_WORKERS: 'true', FHIR_AUTH: 'required' });

const server = await spawnServer(fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-sync-')), { remove: true });
const base = server.base;

interface LastRun {
  started_at: string;
  finished_at: string | null;
  status: string;
  created: number;
  fetched: number;
}

try {
  const app = await benchApp(base, ADMIN_KEY);
  const results: { patient: string; seconds: number; created: number }[] = [];
  for (const p of patients.slice(0, count)) {
    const access_token = await connectUser(base, app, `bench-${p.personKey}`, NV.directoryId, p.username, p.password);
    let run: LastRun | undefined;
    for (let i = 0; i < 1200 && !run?.finished_at; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const list = (await (await fetch(`${base}/connect/connections`, { headers: { authorization: `Bearer ${access_token}` } })).json()) as {
        entry: { last_run: LastRun | null }[];
      };
      run = list.entry[0]?.last_run ?? undefined;
    }
    if (!run?.finished_at || run.status !== 'succeeded') throw new Error(`the sync did not succeed: ${JSON.stringify(run)}`);
    const seconds = (Date.parse(run.finished_at) - Date.parse(run.started_at)) / 1000;
    results.push({ patient: p.personKey, seconds: round(seconds, 2)!, created: run.created });
    console.log(`${p.personKey}: first sync ${round(seconds, 2)} s, ${run.created} resources created (${run.fetched} fetched)`);
  }
  const secs = results.map((r) => r.seconds).sort((a, b) => a - b);
  const perSecond = results.reduce((n, r) => n + r.created, 0) / results.reduce((n, r) => n + r.seconds, 0);
  console.log(
    `first sync of a patient, ${results.length} patients: p50 ${round(quantile(secs, 0.5), 2)} s, max ${secs[secs.length - 1]} s (target < ${TARGET_S} s for ~1,000 resources); ${Math.round(perSecond)} resources/s`,
  );
  console.log(
    JSON.stringify({
      bench: 'sync',
      years: YEARS,
      results,
      p50S: round(quantile(secs, 0.5), 2),
      maxS: secs[secs.length - 1],
      resourcesPerSecond: Math.round(perSecond),
      targetS: TARGET_S,
    }),
  );
} finally {
  await server.stop();
}
