/**
 * An export reads each statement with `COPY (...) TO STDOUT (FORMAT binary)` (pg-copy-streams), not a
 * cursor: the rows come as the bytes PostgreSQL sends, so a resource's stored JSON is never made a
 * JavaScript string. Read through a cursor, every row's text became a string, and so many of them
 * outlived a young-generation collection that an export grew the process by 60-100 MB of promoted
 * garbage; the COPY's raw bytes go into the part buffers as they are, at about half the CPU.
 *
 * COPY takes no bind parameters, so the statement's values are written into it as literals (typed
 * where the statement does not cast them); the binary format is PostgreSQL's: a signature and
 * header, then per row a field count and each field's length and bytes (every column is sent as
 * text here, so a field's bytes are its text in UTF-8), then a trailer of -1.
 * See: https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4
 */
import { escapeLiteral } from 'pg';
import type { Sql } from '../storage/sql.ts';

/** One row as an export writes it: what its meta is rebuilt from, and its stored JSON's bytes. */
export interface ExportTuple {
  id: string;
  version: number;
  lastUpdated: Date;
  source: string | null;
  tagIds: string[];
  text: Buffer;
}

/**
 * The COPY of a statement whose columns are READ_COLUMNS (src/storage/sql.ts): its live versions'
 * id, version, lastUpdated (epoch ms), source, tag ids and stored text, in its order.
 */
export function copyOf(statement: Sql): string {
  const select = inlineValues(statement.text, statement.values);
  return `COPY (SELECT s.fhir_id, s.res_ver::text, (extract(epoch FROM s.res_updated) * 1000)::bigint::text, s.source_uri,
      array_to_string(s.tag_ids, ','), s.res_text_vc
    FROM (${select}) s WHERE s.res_text_vc IS NOT NULL) TO STDOUT (FORMAT binary)`;
}

/** `$n` in a statement replaced by its value as a literal (the statements have no `$` of their own). */
export function inlineValues(text: string, values: unknown[]): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => {
    const i = Number(n) - 1;
    if (i < 0 || i >= values.length) throw new Error(`the statement has no value for $${n}`);
    return literal(values[i]);
  });
}

function literal(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (v instanceof Date) return `${escapeLiteral(v.toISOString())}::timestamptz`;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`${v} cannot be a literal`);
    return String(v);
  }
  if (typeof v === 'bigint') return String(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'string') return escapeLiteral(v);
  if (Array.isArray(v)) return escapeLiteral(arrayText(v));
  throw new Error(`a ${typeof v} cannot be a literal`);
}

/** An array's text form, as pg sends an array parameter: `{"a","b",NULL}`. */
function arrayText(items: unknown[]): string {
  const item = (v: unknown): string => {
    if (v === null || v === undefined) return 'NULL';
    if (Array.isArray(v)) return arrayText(v);
    const s = v instanceof Date ? v.toISOString() : String(v);
    return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
  };
  return `{${items.map(item).join(',')}}`;
}

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const FIELDS = 6;

/** The rows of a binary COPY of copyOf's columns, from its chunks as they come. */
export class CopyTuples {
  /** The start of a row cut by the last chunk's end (a copy: at most about one row). */
  private rest: Buffer | null = null;
  private headerRead = false;
  private done = false;

  /**
   * The rows complete with this chunk; their text views the chunk, or a copy of the one row cut
   * between chunks (never the chunk whole).
   */
  push(chunk: Buffer): ExportTuple[] {
    const out: ExportTuple[] = [];
    let at = 0;
    if (this.rest) {
      // The cut row completed with the start of this chunk: only those bytes copied to it.
      const cut = this.rest.length;
      const end = this.headerRead ? rowEndAcross(this.rest, chunk) : headerEnd(Buffer.concat([this.rest, chunk]));
      if (end < 0) {
        this.rest = Buffer.concat([this.rest, chunk]); // a row (or header) longer than this chunk too
        return out;
      }
      const whole = Buffer.concat([this.rest, chunk.subarray(0, end - cut)]);
      this.rest = null;
      if (this.headerRead) this.rows(whole.subarray(0, end), out);
      else this.header(whole);
      at = end - cut;
    } else if (!this.headerRead) {
      const end = headerEnd(chunk);
      if (end < 0) {
        this.rest = Buffer.from(chunk);
        return out;
      }
      this.header(chunk);
      at = end;
    }
    const tail = chunk.subarray(at);
    const used = this.rows(tail, out);
    if (used < tail.length) this.rest = Buffer.from(tail.subarray(used));
    return out;
  }

  /** Throws unless the COPY ended with its trailer and nothing cut. */
  end(): void {
    if (!this.done || this.rest) throw new Error('the COPY ended before its trailer');
  }

  private header(buf: Buffer): void {
    if (!buf.subarray(0, SIGNATURE.length).equals(SIGNATURE)) throw new Error('not a binary COPY');
    this.headerRead = true;
  }

  /** Parses the whole rows (and the trailer) at the start of `buf` into `out`; answers the bytes they took. */
  private rows(buf: Buffer, out: ExportTuple[]): number {
    let at = 0;
    while (at < buf.length) {
      if (this.done) throw new Error('data after the COPY trailer');
      const end = rowEnd(buf, at);
      if (end < 0) break;
      if (buf.readInt16BE(at) === -1) this.done = true;
      else out.push(tupleOf(buf, at));
      at = end;
    }
    return at;
  }
}

/** Where the header ends (the signature, flags and extension), or -1 when `buf` does not hold it all. */
function headerEnd(buf: Buffer): number {
  if (buf.length < SIGNATURE.length + 8) return -1;
  const end = SIGNATURE.length + 8 + buf.readUInt32BE(SIGNATURE.length + 4);
  return end <= buf.length ? end : -1;
}

/** Where the row (or the trailer) at `at` ends, or -1 when `buf` does not hold it all. */
function rowEnd(buf: Buffer, at: number): number {
  if (at + 2 > buf.length) return -1;
  const count = buf.readInt16BE(at);
  if (count === -1) return at + 2;
  if (count !== FIELDS) throw new Error(`a COPY row of ${count} fields, not ${FIELDS}`);
  let p = at + 2;
  for (let f = 0; f < FIELDS; f++) {
    if (p + 4 > buf.length) return -1;
    const len = buf.readInt32BE(p);
    p += 4 + Math.max(0, len);
    if (p > buf.length) return -1;
  }
  return p;
}

/** rowEnd of a row that begins `a` and goes on into `b`, as an offset into the two (-1: not whole in them). */
function rowEndAcross(a: Buffer, b: Buffer): number {
  const total = a.length + b.length;
  const read = (p: number, n: 2 | 4): number | undefined => {
    if (p + n > total) return undefined;
    const bytes =
      p + n <= a.length
        ? a.subarray(p, p + n)
        : p >= a.length
          ? b.subarray(p - a.length, p - a.length + n)
          : Buffer.concat([a.subarray(p), b.subarray(0, p + n - a.length)]);
    return n === 2 ? bytes.readInt16BE(0) : bytes.readInt32BE(0);
  };
  const count = read(0, 2);
  if (count === undefined) return -1;
  if (count === -1) return 2;
  if (count !== FIELDS) throw new Error(`a COPY row of ${count} fields, not ${FIELDS}`);
  let p = 2;
  for (let f = 0; f < FIELDS; f++) {
    const len = read(p, 4);
    if (len === undefined) return -1;
    p += 4 + Math.max(0, len);
    if (p > total) return -1;
  }
  return p;
}

/** The row at `at` (whole in `buf`, as rowEnd found). */
function tupleOf(buf: Buffer, at: number): ExportTuple {
  const fields: (Buffer | null)[] = [];
  let p = at + 2;
  for (let f = 0; f < FIELDS; f++) {
    const len = buf.readInt32BE(p);
    p += 4;
    fields.push(len < 0 ? null : buf.subarray(p, p + len));
    p += Math.max(0, len);
  }
  const [id, version, ms, source, tags, text] = fields;
  if (!id || !version || !ms || !text) throw new Error('a COPY row without its id, version, lastUpdated or text');
  return {
    id: id.toString('utf8'),
    version: Number(version.toString('latin1')),
    lastUpdated: new Date(Number(ms.toString('latin1'))),
    source: source ? source.toString('utf8') : null,
    tagIds: tags && tags.length ? tags.toString('latin1').split(',') : [],
    text,
  };
}

/** The COPY that stores a part (its one row written by partRow, then the part's bytes, then PART_TRAILER). */
export const PART_COPY = 'COPY trb_export_part (export_id, file_no, seq, body) FROM STDIN (FORMAT binary)';

/**
 * What goes before a part's bytes in PART_COPY: the header and its row's fields up to the body's
 * length. The part's bytes are sent as they are (a bind parameter would copy them twice over).
 */
export function partRow(exportId: string, fileNo: number, seq: number, bodyLength: number): Buffer {
  const uuid = Buffer.from(exportId.replaceAll('-', ''), 'hex');
  if (uuid.length !== 16) throw new Error(`${exportId} is not a uuid`);
  const b = Buffer.alloc(SIGNATURE.length + 8 + 2 + (4 + 16) + (4 + 4) * 2 + 4);
  let p = SIGNATURE.copy(b, 0);
  p = b.writeInt32BE(0, p); // flags
  p = b.writeInt32BE(0, p); // no header extension
  p = b.writeInt16BE(4, p); // fields
  p = b.writeInt32BE(16, p);
  p += uuid.copy(b, p);
  p = b.writeInt32BE(4, p);
  p = b.writeInt32BE(fileNo, p);
  p = b.writeInt32BE(4, p);
  p = b.writeInt32BE(seq, p);
  b.writeInt32BE(bodyLength, p);
  return b;
}

/** The end of PART_COPY's data: no more rows. */
export const PART_TRAILER = Buffer.from([0xff, 0xff]);

/** The COPY of a file's parts, in order: one bytea column (`body`). */
export function fileCopy(exportId: string, fileNo: number): string {
  const select = inlineValues('SELECT body FROM trb_export_part WHERE export_id = $1::uuid AND file_no = $2 ORDER BY seq', [exportId, fileNo]);
  return `COPY (${select}) TO STDOUT (FORMAT binary)`;
}

/**
 * The bytes of a binary COPY of one bytea column, row after row, passed on as they come: a 1 MiB
 * part is never gathered whole (a download holds a chunk, not a part, nor a string of it).
 */
export async function* copiedBytes(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let headerRead = false;
  let done = false;
  /** A row's count and length (or the header) cut by a chunk's end: a few bytes. */
  let pending: Buffer | null = null;
  /** What is left of the current row's bytes. */
  let left = 0;
  for await (const chunk of chunks) {
    const buf: Buffer = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = null;
    let at = 0;
    if (!headerRead) {
      const end = headerEnd(buf);
      if (end < 0) {
        pending = Buffer.from(buf);
        continue;
      }
      if (!buf.subarray(0, SIGNATURE.length).equals(SIGNATURE)) throw new Error('not a binary COPY');
      headerRead = true;
      at = end;
    }
    while (at < buf.length) {
      if (left > 0) {
        const n = Math.min(left, buf.length - at);
        yield buf.subarray(at, at + n);
        at += n;
        left -= n;
        continue;
      }
      if (done) throw new Error('data after the COPY trailer');
      if (at + 2 > buf.length) break;
      const count = buf.readInt16BE(at);
      if (count === -1) {
        done = true;
        at += 2;
        continue;
      }
      if (count !== 1) throw new Error(`a COPY row of ${count} fields, not 1`);
      if (at + 6 > buf.length) break;
      left = buf.readInt32BE(at + 2);
      if (left < 0) throw new Error('a COPY row without its bytes');
      at += 6;
    }
    if (at < buf.length) pending = Buffer.from(buf.subarray(at));
  }
  if (!done || left || pending) throw new Error('the COPY ended before its trailer');
}
