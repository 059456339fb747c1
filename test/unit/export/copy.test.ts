/**
 * The export's COPY (src/export/copy.ts): statements' values written in as literals (quotes,
 * backslashes, arrays, dates), and the binary COPY format read from chunks cut anywhere (a row,
 * a length, the header across chunks), including NULL fields, non-ASCII text, and the trailer.
 */
import t from 'tap';
import { copiedBytes, copyOf, CopyTuples, fileCopy, inlineValues, partRow, PART_TRAILER } from '../../../src/export/copy.ts';

t.test('values as literals', async (t) => {
  t.equal(inlineValues('a = $1 AND b = $2', ["it's", 'back\\slash']), `a = 'it''s' AND b =  E'back\\\\slash'`);
  t.equal(inlineValues('$1::bigint[]', [['1', '2']]), `'{"1","2"}'::bigint[]`);
  t.equal(inlineValues('$1', [['a"b', null]]), ` E'{"a\\\\"b",NULL}'`, 'quotes in an array escaped, then the literal');
  t.equal(inlineValues('t <= $1', [new Date('2026-01-02T03:04:05.678Z')]), `t <= '2026-01-02T03:04:05.678Z'::timestamptz`);
  t.equal(inlineValues('$1 $2 $3', [7, true, null]), '7 true NULL');
  t.equal(inlineValues('$10 $1', [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), '10 1', '$10 is not $1 then 0');
  t.throws(() => inlineValues('$2', [1]), /no value for \$2/);
  t.throws(() => inlineValues('$1', [{ a: 1 }]), /cannot be a literal/);
  t.throws(() => inlineValues('$1', [Number.NaN]), /cannot be a literal/);
  t.match(
    copyOf({ text: 'SELECT x FROM y WHERE z = $1', values: ['q'] }),
    /^COPY \(SELECT .* FROM \(SELECT x FROM y WHERE z = 'q'\) s WHERE s\.res_text_vc IS NOT NULL\) TO STDOUT \(FORMAT binary\)$/s,
  );
});

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
function field(v: string | null): Buffer {
  if (v === null) return Buffer.from([0xff, 0xff, 0xff, 0xff]);
  const bytes = Buffer.from(v, 'utf8');
  const len = Buffer.alloc(4);
  len.writeInt32BE(bytes.length);
  return Buffer.concat([len, bytes]);
}
function row(...fields: (string | null)[]): Buffer {
  const count = Buffer.alloc(2);
  count.writeInt16BE(fields.length);
  return Buffer.concat([count, ...fields.map(field)]);
}
const header = (extension = Buffer.alloc(0)) => {
  const b = Buffer.alloc(8);
  b.writeInt32BE(extension.length, 4);
  return Buffer.concat([SIGNATURE, b, extension]);
};
const rows = [
  row('a1', '1', '1767225600000', null, null, '{"resourceType":"Patient","active":true}'),
  row('b-2', '12', '1767225600123', 'https://src.example', '5,9', '{"resourceType":"Observation","note":[{"text":"µ Größe 你好"}]}'),
  row('c', '3', '0', '', '', `{"resourceType":"Basic","text":"${'x'.repeat(5000)}"}`),
];
const stream = Buffer.concat([header(Buffer.from('ext!')), ...rows, Buffer.from([0xff, 0xff])]);

t.test('binary COPY rows from chunks cut at every size', async (t) => {
  for (const size of [1, 2, 3, 5, 7, 19, 64, 1000, stream.length]) {
    const parser = new CopyTuples();
    const got = [];
    for (let at = 0; at < stream.length; at += size) got.push(...parser.push(stream.subarray(at, at + size)));
    parser.end();
    t.equal(got.length, 3, `chunks of ${size}: three rows`);
    t.same(
      got.map((r) => [r.id, r.version, r.lastUpdated.toISOString(), r.source, r.tagIds, r.text.toString('utf8').slice(0, 40)]),
      [
        ['a1', 1, '2026-01-01T00:00:00.000Z', null, [], '{"resourceType":"Patient","active":true}'],
        ['b-2', 12, '2026-01-01T00:00:00.123Z', 'https://src.example', ['5', '9'], '{"resourceType":"Observation","note":[{"'],
        ['c', 3, '1970-01-01T00:00:00.000Z', '', [], '{"resourceType":"Basic","text":"xxxxxxxx'],
      ],
      `chunks of ${size}: as written`,
    );
    t.equal(got[1].text.toString('utf8'), '{"resourceType":"Observation","note":[{"text":"µ Größe 你好"}]}', 'UTF-8 kept whole across cuts');
    t.equal(got[2].text.length, Buffer.byteLength(`{"resourceType":"Basic","text":"${'x'.repeat(5000)}"}`));
  }
});

t.test('a COPY that stops early, or is not one, is refused', async (t) => {
  const p = new CopyTuples();
  p.push(stream.subarray(0, stream.length - 10));
  t.throws(() => p.end(), /before its trailer/);
  t.throws(() => new CopyTuples().push(Buffer.concat([Buffer.from('NOTACOPY\n\0\0'), Buffer.alloc(8)])), /not a binary COPY/);
  const wrong = Buffer.concat([header(), row('a', '1')]);
  t.throws(() => new CopyTuples().push(wrong), /2 fields, not 6/);
  const after = new CopyTuples();
  t.throws(() => after.push(Buffer.concat([header(), Buffer.from([0xff, 0xff]), rows[0]])), /after the COPY trailer/);
});

t.test("a part's COPY row: header, four fields, the body's length, then the trailer", async (t) => {
  const head = partRow('0f8fad5b-d9cb-469f-a165-70867728950e', 3, 7, 1234);
  t.ok(head.subarray(0, SIGNATURE.length).equals(SIGNATURE));
  let p = SIGNATURE.length + 8;
  t.equal(head.readInt16BE(p), 4);
  p += 2;
  t.equal(head.readInt32BE(p), 16);
  t.equal(head.subarray(p + 4, p + 20).toString('hex'), '0f8fad5bd9cb469fa16570867728950e');
  p += 20;
  t.same(
    [head.readInt32BE(p), head.readInt32BE(p + 4), head.readInt32BE(p + 8), head.readInt32BE(p + 12), head.readInt32BE(p + 16)],
    [4, 3, 4, 7, 1234],
  );
  t.equal(head.length, p + 20);
  t.same([...PART_TRAILER], [0xff, 0xff]);
  t.throws(() => partRow('not-a-uuid', 1, 0, 1), /is not a uuid/);
});

t.test("a file's parts passed on as they come, whatever the chunks", async (t) => {
  const parts = ['{"resourceType":"Patient"}\n', 'ü'.repeat(3000), '', '{"a":1}\n'];
  const copy = Buffer.concat([header(), ...parts.map((p) => row(p)), Buffer.from([0xff, 0xff])]);
  for (const size of [1, 3, 6, 7, 100, copy.length]) {
    async function* chunks() {
      for (let at = 0; at < copy.length; at += size) yield copy.subarray(at, at + size);
    }
    const got: Buffer[] = [];
    for await (const b of copiedBytes(chunks())) got.push(b);
    t.equal(Buffer.concat(got).toString('utf8'), parts.join(''), `chunks of ${size}: the parts' bytes, in order`);
    t.ok(
      got.every((b) => b.length <= Math.max(size, 1)),
      'never more than a chunk at once',
    );
  }
  async function* cut() {
    yield copy.subarray(0, copy.length - 5);
  }
  await t.rejects(async () => {
    for await (const _ of copiedBytes(cut()));
  }, /before its trailer/);
  t.match(
    fileCopy('0f8fad5b-d9cb-469f-a165-70867728950e', 2),
    /^COPY \(SELECT body FROM trb_export_part WHERE export_id = '0f8fad5b-d9cb-469f-a165-70867728950e'::uuid AND file_no = 2 ORDER BY seq\) TO STDOUT \(FORMAT binary\)$/,
  );
});
