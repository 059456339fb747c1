/**
 * What the CORS hook (plugins/cors.ts) costs a request, in this process, without a database: the
 * same trivial route answered by Fastify alone and with the plugin, requests without an Origin
 * (an app's back end, the common case) and with one on the FHIR API (a browser app).
 *
 *   npx node bench/cors.ts [--requests 20000]
 *
 * Prints the median µs per request of each over rounds run in alternation, and the differences;
 * one JSON line.
 */
import { parseArgs } from 'node:util';
import Fastify, { type FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import corsPlugin from '../plugins/cors.ts';

const { values: args } = parseArgs({ options: { requests: { type: 'string', default: '20000' } } });
const N = Number(args.requests);

async function build(withCors: boolean): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  // The plugin names 'db' as a dependency; the FHIR API's CORS never queries it.
  app.register(fp(async (a) => void a.decorate('pg', {} as never), { name: 'db' }));
  if (withCors) app.register(corsPlugin);
  app.get('/fhir/r4/Patient/:id', async () => ({ resourceType: 'Patient' }));
  await app.ready();
  return app;
}

/** CPU µs per request for `n` requests. */
async function timed(app: FastifyInstance, headers: Record<string, string>, n: number): Promise<number> {
  // CPU time of this process, not wall time: on a shared machine, the wait for a core is not the hook's.
  const start = process.cpuUsage();
  for (let i = 0; i < n; i++) await app.inject({ url: '/fhir/r4/Patient/1', headers });
  const used = process.cpuUsage(start);
  return (used.user + used.system) / n;
}

const plain = await build(false);
const cors = await build(true);
const origin = { origin: 'http://app.example:3000' };
const variants: [string, FastifyInstance, Record<string, string>][] = [
  ['plainUs', plain, {}],
  ['corsNoOriginUs', cors, {}],
  ['corsWithOriginUs', cors, origin],
];
for (const [, app, headers] of variants) await timed(app, headers, 2000);
// Rounds in alternation, the median of each: a busy machine slows all three alike.
const ROUNDS = 15;
const samples = new Map<string, number[]>(variants.map(([k]) => [k, []]));
for (let i = 0; i < ROUNDS; i++) {
  // Each round in another order: no variant always runs first (after the others' garbage).
  for (const [k, app, headers] of [...variants.slice(i % 3), ...variants.slice(0, i % 3)])
    samples.get(k)!.push(await timed(app, headers, Math.ceil(N / ROUNDS)));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const r = Object.fromEntries([...samples].map(([k, xs]) => [k, median(xs)])) as Record<string, number>;
const round = (n: number) => Math.round(n * 10) / 10;
console.log(
  `Fastify alone: ${round(r.plainUs)} µs/request; with the CORS hook: ${round(r.corsNoOriginUs)} µs (no Origin, +${round(r.corsNoOriginUs - r.plainUs)}), ${round(r.corsWithOriginUs)} µs (an Origin on the FHIR API, +${round(r.corsWithOriginUs - r.plainUs)})`,
);
console.log(JSON.stringify(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, round(v)]))));
await plain.close();
await cors.close();
