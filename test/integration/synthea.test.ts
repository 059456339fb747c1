import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { buildTestApp } from '../helper.ts';

// Each Synthea bundle loads as one transaction; its urn:uuid references resolve to stored resources.
const dir = path.resolve(import.meta.dirname, '../../../shared/synthea');
const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.json')) : [];
const app = await buildTestApp(t);

t.test('every Synthea bundle loads as one transaction', { skip: files.length ? false : `no bundles in ${dir}` }, async (t) => {
  let resources = 0;
  const started = performance.now();
  for (const f of files) {
    const bundle = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    const res = await app.inject({ method: 'POST', url: '/fhir/r4', headers: { 'content-type': 'application/fhir+json' }, payload: bundle });
    t.equal(res.statusCode, 200, `${f}: ${res.statusCode === 200 ? '' : res.body.slice(0, 500)}`);
    const out = res.json();
    t.equal(out.type, 'transaction-response');
    t.equal(out.entry.length, bundle.entry.length, `${f}: one response per entry`);
    t.ok(
      out.entry.every((e: { response: { status: string } }) => e.response.status.startsWith('201')),
      `${f}: every entry created`,
    );
    resources += bundle.entry.length;
  }
  t.comment(
    `${resources} resources in ${files.length} bundles, ${Math.round(resources / ((performance.now() - started) / 1000))} resources/s through inject`,
  );

  // References: no urn:uuid remains, and every local reference of an Observation and an Encounter resolves.
  const counts = await app.pg.query(`SELECT count(*)::int AS n FROM hfj_resource`);
  t.equal(counts.rows[0].n, resources);
  const dangling = await app.pg.query(
    `SELECT count(*)::int AS n FROM hfj_res_link WHERE target_resource_type IS NOT NULL AND target_fhir_id IS NOT NULL AND target_resource_id IS NULL`,
  );
  t.equal(dangling.rows[0].n, 0, 'every local reference resolves to a stored resource');
  const urn = await app.pg.query(`SELECT count(*)::int AS n FROM hfj_res_ver WHERE res_text_vc LIKE '%"reference":"urn:uuid:%'`);
  t.equal(urn.rows[0].n, 0, 'no urn:uuid reference is left');

  const obs = await app.inject({ url: '/fhir/r4/Observation?_count=1' });
  const o = obs.json().entry[0].resource;
  const subject = await app.inject({ url: `/fhir/r4/${o.subject.reference}` });
  t.equal(subject.statusCode, 200, 'an Observation subject reads back');
  t.equal(subject.json().resourceType, 'Patient');
});
