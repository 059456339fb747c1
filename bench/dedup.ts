/**
 * De-duplication of one person's records from two sources (src/dedup/run.ts), in a process of its
 * own on an embedded PostgreSQL in a fresh data folder:
 *
 *   npx node bench/dedup.ts [--resources 1000] [--runs 5]
 *
 * A person's record from the sandbox generator (~--resources of it), stored twice for one user of
 * an app: once as a hospital sends it and once as a clinic does (every record again, under other
 * ids and another meta.source, with the clinic's own variation: times minutes apart, values in
 * other units, displays reworded), through the FHIR API as transactions. Then, --runs times:
 * de-duplicating the person from scratch (its links and state dropped first), and again with
 * nothing new. Targets (issue 19): under 1 s for 2 x 1,000 resources; under 50 ms with nothing new.
 * Prints a summary, then one JSON line.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { dedupPerson } from '../src/dedup/run.ts';
import { generateSystem } from '../src/sandbox/generate.ts';
import { quantile, round } from './server.ts';

const { values: args } = parseArgs({ options: { resources: { type: 'string', default: '1000' }, runs: { type: 'string', default: '5' } } });
const wanted = Math.max(50, Number(args.resources) || 1000);
const runs = Math.max(1, Number(args.runs) || 5);
const TARGET = { fullMs: 1000, unchangedMs: 50 };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-dedup-bench-'));
fs.chmodSync(dir, 0o755);
const app = await buildApp({
  ...loadConfig({
    ...process.env,
    TRIBUTARY_DATA_DIR: dir,
    LOG_LEVEL: 'warn',
    SANDBOXES: 'false',
    DIRECTORY_AUTOLOAD: 'false',
    SYNC_WORKERS: 'false',
  }),
  port: 0,
});
try {
  await app.ready();
  const { app: tenant } = await app.auth.createApp({ name: 'dedup bench' });
  const user = (await app.auth.createUser(tenant.id, 'person'))!;
  const { access_token: token } = await app.auth.exchangeCode(tenant, await app.auth.newCode(tenant.id, user.id));

  // About `wanted` resources of one person: enough years of history.
  const years = Math.max(1, Math.ceil(wanted / 38));
  const record = generateSystem({
    seed: 'dedup-bench',
    patients: 1,
    idPrefix: 'h',
    systemName: 'Hospital',
    sharedPerson: false,
    years,
  }).patients[0].resources.slice(0, wanted);
  const asClinic = (r: Resource): Resource => {
    const c = structuredClone(r) as Resource & { effectiveDateTime?: string; valueQuantity?: { value?: number; code?: string; unit?: string } };
    c.id = `c-${r.id}`;
    if (c.effectiveDateTime && c.effectiveDateTime.length > 10)
      c.effectiveDateTime = new Date(Date.parse(c.effectiveDateTime) + 3 * 60_000).toISOString();
    if (c.valueQuantity?.code === 'kg' && c.valueQuantity.value !== undefined)
      c.valueQuantity = { ...c.valueQuantity, value: Math.round((c.valueQuantity.value / 0.45359237) * 1000) / 1000, code: '[lb_av]', unit: 'lb' };
    return c;
  };
  const store = async (resources: Resource[], source: string) => {
    for (let i = 0; i < resources.length; i += 250) {
      const bundle: Bundle = {
        resourceType: 'Bundle',
        type: 'batch',
        entry: resources.slice(i, i + 250).map((r) => ({
          resource: { ...r, meta: { source } } as Resource,
          request: { method: 'PUT', url: `${r.resourceType}/${r.id}` },
        })),
      };
      const res = await app.inject({
        method: 'POST',
        url: '/fhir/r4',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
        payload: bundle,
      });
      if (res.statusCode !== 200) throw new Error(`batch: ${res.statusCode} ${res.body.slice(0, 300)}`);
    }
  };
  await store(record, 'https://hospital.example/fhir');
  await store(record.map(asClinic), 'https://clinic.example/fhir');
  console.log(`one person, ${record.length} resources from a hospital and ${record.length} from a clinic (${years} years of history)`);

  const full: number[] = [];
  const unchanged: number[] = [];
  let links = 0;
  for (let i = 0; i < runs; i++) {
    await app.pg.query('DELETE FROM trb_dedup_link WHERE owner_id = $1', [user.id]);
    await app.pg.query('DELETE FROM trb_dedup_state WHERE owner_id = $1', [user.id]);
    const a = await dedupPerson(app.pg, tenant.id, user.id);
    if (a.status !== 'linked') throw new Error(`a run from scratch answered ${a.status}`);
    full.push(a.ms);
    links = a.links;
    const b = await dedupPerson(app.pg, tenant.id, user.id);
    if (b.status !== 'unchanged') throw new Error(`a run with nothing new answered ${b.status}`);
    unchanged.push(b.ms);
  }
  const sorted = (x: number[]) => [...x].sort((p, q) => p - q);
  const f = sorted(full);
  const u = sorted(unchanged);
  console.log(
    `from scratch: ${links} links; p50 ${round(quantile(f, 0.5))} ms, max ${round(f.at(-1)!)} ms (target < ${TARGET.fullMs} ms: ${f.at(-1)! < TARGET.fullMs ? 'met' : 'NOT met'})`,
  );
  console.log(
    `nothing new: p50 ${round(quantile(u, 0.5), 2)} ms, max ${round(u.at(-1)!, 2)} ms (target < ${TARGET.unchangedMs} ms: ${u.at(-1)! < TARGET.unchangedMs ? 'met' : 'NOT met'})`,
  );
  console.log(
    JSON.stringify({
      bench: 'dedup',
      resourcesPerSource: record.length,
      links,
      fullMs: full.map((x) => round(x)),
      unchangedMs: unchanged.map((x) => round(x, 2)),
      target: TARGET,
    }),
  );
} finally {
  await app.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
