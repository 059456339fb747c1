/**
 * Subscriptions across processes sharing one database, as an API process and a worker process do:
 * a subscription written through the API process is activated by the worker's dispatcher, the API
 * process's registry hears of it (LISTEN/NOTIFY) and its writes notify; turned off through the API,
 * the worker stops. The API process sends nothing itself (no workers there).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { buildApp } from '../../src/app.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { FHIR, FHIR_JSON, LOINC, send } from './search-support.ts';

const url = await testDatabase(t);
const api = await buildApp(testConfig(url, { syncWorkers: false }), { logger: false });
t.teardown(() => api.close());
await api.ready();
const worker = await buildApp(testConfig(url, { syncWorkers: true }), { logger: false });
t.teardown(() => worker.close());
await worker.ready();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitFor<T>(what: () => T | Promise<T>, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  let v = await what();
  while (!v && Date.now() < until) {
    await sleep(20);
    v = await what();
  }
  return v;
}

const got: string[] = [];
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    got.push(req.url!);
    res.writeHead(200).end();
  });
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
t.teardown(() => {
  server.closeAllConnections();
  server.close();
});
const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
const observation = { resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '1111-1' }] } };

t.test('written through one process, activated by another, heard of by both', async (t) => {
  const created = await send(api, {
    method: 'POST',
    url: `${FHIR}/Subscription`,
    headers: { 'content-type': FHIR_JSON },
    payload: {
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'processes',
      criteria: `Observation?code=${LOINC}|1111-1`,
      channel: { type: 'rest-hook', endpoint, payload: FHIR_JSON },
    },
  });
  t.equal(created.statusCode, 201);
  const sub = created.json();
  const active = await waitFor(async () => (await send(api, { method: 'GET', url: `${FHIR}/Subscription/${sub.id}` })).json().status === 'active');
  t.ok(active, "the worker's dispatcher activated it");
  const t0 = Date.now();
  t.ok(await waitFor(() => api.subscriptions.registry.count === 1, 3000), 'the API process registry has it');
  t.ok(Date.now() - t0 < 1000, `within a second of its activation (${Date.now() - t0} ms)`);
  const o = await send(api, { method: 'POST', url: `${FHIR}/Observation`, headers: { 'content-type': FHIR_JSON }, payload: observation });
  t.ok(await waitFor(() => got.length >= 1), 'a write through the API process notifies');
  t.same(got, [`/fhir/Observation/${o.json().id}`]);

  const current = (await send(api, { method: 'GET', url: `${FHIR}/Subscription/${sub.id}` })).json();
  await send(api, {
    method: 'PUT',
    url: `${FHIR}/Subscription/${sub.id}`,
    headers: { 'content-type': FHIR_JSON },
    payload: { ...current, status: 'off' },
  });
  t.ok(await waitFor(() => api.subscriptions.registry.count === 0 && worker.subscriptions.registry.count === 0, 3000), 'off: out of both registries');
  await send(worker, { method: 'POST', url: `${FHIR}/Observation`, headers: { 'content-type': FHIR_JSON }, payload: observation });
  await sleep(500);
  t.equal(got.length, 1, 'nothing more');
});
