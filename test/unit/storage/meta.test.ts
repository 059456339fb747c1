/**
 * Rebuilding a stored version's JSON (src/storage/meta.ts): the id and meta spliced in after the
 * resourceType when the stored text allows it, the same whether it is read as a string (a read) or
 * as UTF-8 bytes (an export's COPY), and the stored text parsed when it keeps meta of its own.
 */
import t from 'tap';
import { idAndMeta, rebuildJson, spliceIndex, splitResource, TAG } from '../../../src/storage/meta.ts';

const row = {
  id: 'p1',
  versionId: 3,
  lastUpdated: new Date('2026-05-06T07:08:09.010Z'),
  source: 'https://ehr.example/fhir',
  tags: [[TAG, 'https://sys', 'c', null, null, null]] as [number, string | null, string | null, string | null, string | null, boolean | null][],
};

t.test('spliced in after the resourceType, the same for text and bytes', async (t) => {
  for (const text of ['{"resourceType":"Patient","active":true,"name":[{"text":"Zoë, ä"}]}', '{"resourceType":"Patient"}']) {
    const at = spliceIndex(text);
    const bytes = Buffer.from(text);
    const atBytes = spliceIndex(bytes);
    t.ok(at > 0);
    const fromBytes = Buffer.concat([bytes.subarray(0, atBytes), Buffer.from(idAndMeta(row)), bytes.subarray(atBytes)]).toString('utf8');
    t.equal(fromBytes, rebuildJson(text, row), 'bytes and text rebuild alike');
    const parsed = JSON.parse(rebuildJson(text, row));
    t.same(Object.keys(parsed).slice(0, 3), ['resourceType', 'id', 'meta']);
    t.same(parsed.meta, {
      versionId: '3',
      lastUpdated: '2026-05-06T07:08:09.010Z',
      source: 'https://ehr.example/fhir',
      tag: [{ system: 'https://sys', code: 'c' }],
    });
  }
});

t.test('parsed when the stored text keeps meta of its own, or is not as splitResource writes', async (t) => {
  const stored = splitResource({
    resourceType: 'Patient',
    meta: { extension: [{ url: 'https://x', valueString: 'y' }] },
    active: true,
  } as never).text;
  t.equal(spliceIndex(stored), -1);
  t.equal(spliceIndex(Buffer.from(stored)), -1);
  const parsed = JSON.parse(rebuildJson(stored, row));
  t.same(parsed.meta.extension, [{ url: 'https://x', valueString: 'y' }], 'residual meta kept');
  t.equal(parsed.meta.versionId, '3');
  t.equal(spliceIndex(' {"resourceType":"Patient"}'), -1);
  t.equal(spliceIndex('{"resourceType":"Patient"'), -1);
});
