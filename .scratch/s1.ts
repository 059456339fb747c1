import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
const app = await buildApp({ ...loadConfig({ LOG_LEVEL: 'warn', TRIBUTARY_DATA_DIR: '/tmp/s1data', EMBEDDED_PG_PORT: '5488' }) });
await app.ready();
const inj = async (method: string, url: string, payload?: unknown) => {
  const r = await app.inject({ method: method as 'GET', url, payload: payload as object, headers: { 'content-type': 'application/fhir+json' } });
  return { status: r.statusCode, body: r.body ? JSON.parse(r.body) : undefined };
};
const p = await inj('POST', '/fhir/r4/Patient', { resourceType: 'Patient', name: [{ family: 'Smíth', given: ['Ann'] }], birthDate: '1980-02-03', gender: 'female', identifier: [{ system: 'urn:x', value: 'A1' }] });
const pid = p.body.id;
for (let i = 0; i < 5; i++) await inj('POST', '/fhir/r4/Observation', { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }], text: 'Heart rate' }, subject: { reference: `Patient/${pid}` }, effectiveDateTime: `202${i}-05-01T10:00:00Z`, valueQuantity: { value: 70 + i, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' } });
const qs = process.argv.slice(2);
for (const q of qs) {
  const r = await inj('GET', q.replace('PID', pid));
  console.log(q, r.status, r.status === 200 ? JSON.stringify({ total: r.body.total, n: r.body.entry?.map((e: any) => `${e.search.mode}:${e.resource.resourceType}/${e.resource.id ?? ''}`), link: r.body.link?.map((l: any) => l.relation + ' ' + l.url.replace(/^.*\/fhir\/r4/, '')) }) : JSON.stringify(r.body).slice(0, 400));
}
await app.close();
