import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { isDeepStrictEqual } from 'node:util';
import { buildTestApp } from '../helper.ts';

// The official R4 examples (npm hl7.fhir.r4.examples@4.0.1): at least 99% are accepted, stored and
// read back equal to what was sent, apart from meta.versionId and meta.lastUpdated.
const dir = path.dirname(createRequire(import.meta.url).resolve('hl7.fhir.r4.examples/package.json'));
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'package.json' && !f.startsWith('.'));

function comparable(r: Record<string, unknown>): Record<string, unknown> {
  const { meta, ...rest } = r as { meta?: Record<string, unknown> };
  if (!meta) return rest;
  const { versionId: _v, lastUpdated: _l, ...m } = meta;
  return Object.keys(m).length ? { ...rest, meta: m } : rest;
}

const app = await buildTestApp(t);

t.test('official examples round-trip', async (t) => {
  const rejected: string[] = [];
  const different: string[] = [];
  let tried = 0;
  // Several requests in flight, as clients would send them; each file is checked on its own.
  async function one(f: string): Promise<void> {
    let resource: Record<string, unknown>;
    try {
      resource = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    } catch {
      return;
    }
    if (typeof resource.resourceType !== 'string') return;
    tried++;
    const type = resource.resourceType;
    const id = resource.id as string | undefined;
    const res = id
      ? await app.inject({ method: 'PUT', url: `/fhir/r4/${type}/${id}`, headers: { 'content-type': 'application/fhir+json' }, payload: resource })
      : await app.inject({ method: 'POST', url: `/fhir/r4/${type}`, headers: { 'content-type': 'application/fhir+json' }, payload: resource });
    if (res.statusCode >= 500) t.fail(`${f}: ${res.statusCode} ${res.body.slice(0, 300)}`);
    if (res.statusCode >= 300) {
      const issues = (res.json().issue ?? []).map(
        (i: { diagnostics?: string; expression?: string[] }) => `${i.expression?.[0] ?? ''} ${i.diagnostics ?? ''}`,
      );
      rejected.push(`${f}: ${res.statusCode} ${issues.slice(0, 3).join(' | ')}`);
      return;
    }
    const stored = res.json();
    const back = await app.inject({ url: `/fhir/r4/${type}/${stored.id}` });
    const expected = comparable({ ...resource, id: stored.id });
    if (back.statusCode !== 200 || !isDeepStrictEqual(comparable(back.json()), expected)) different.push(f);
  }
  const queue = [...files];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let f = queue.shift(); f !== undefined; f = queue.shift()) await one(f);
    }),
  );
  rejected.sort();
  different.sort();
  const ok = tried - rejected.length - different.length;
  t.comment(`${ok} of ${tried} examples accepted and read back equal (${((ok / tried) * 100).toFixed(2)}%)`);
  for (const r of rejected) t.comment(`rejected ${r}`);
  for (const d of different) t.comment(`differs ${d}`);
  t.ok(ok / tried >= 0.99, `at least 99% of ${tried} accepted and equal`);
});
