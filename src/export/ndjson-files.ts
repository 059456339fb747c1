/**
 * An export's NDJSON files as they are written: lines gathered into parts of about 1 MiB, each
 * part stored as soon as it is full (so memory holds one part, whatever the export's size), a
 * type's file closed and the next begun past MAX_FILE_RESOURCES.
 */
import type pg from 'pg';
import { finished } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { PART_COPY, PART_TRAILER, partRow } from './copy.ts';
import { insertFile } from './sql.ts';

/** The size of a stored part. */
export const PART_BYTES = 1 << 20;
/** Resources per file: a client can download a large type's files in parallel, and resume per file. */
export const MAX_FILE_RESOURCES = 100_000;

/** The export is gone (deleted, so cancelled) or no longer in progress: stop writing. */
export class ExportCancelled extends Error {}

const NEWLINE = Buffer.from('\n');

export interface WrittenFile {
  fileNo: number;
  kind: 'output' | 'error';
  type: string;
  count: number;
}

export class NdjsonFiles {
  private fileNo = 0;
  private current: { kind: 'output' | 'error'; type: string; count: number; bytes: number; seq: number } | null = null;
  /**
   * Two part buffers, used in turn: one fills while the other is being stored. Lines are written
   * into them as bytes, so an export makes no 1 MiB string or Buffer per part (those live in V8's
   * large-object space and external memory until a full GC, and grew the process by ~100 MB).
   */
  private readonly buffers = [Buffer.allocUnsafe(PART_BYTES), Buffer.allocUnsafe(PART_BYTES)];
  private which = 0;
  private used = 0;
  /** The part being stored: one at a time is in flight while the next fills. */
  private storing: Promise<void> = Promise.resolve();
  readonly files: WrittenFile[] = [];

  private readonly pool: pg.Pool;
  private readonly exportId: string;

  constructor(pool: pg.Pool, exportId: string) {
    this.pool = pool;
    this.exportId = exportId;
  }

  /** Appends one resource (its JSON, one line) to the file of its type. */
  add(kind: 'output' | 'error', type: string, json: string): Promise<void> {
    return this.addLine(kind, type, [json]);
  }

  /** Appends one resource, its JSON in pieces (text and UTF-8 bytes), as one line of the file of its type. */
  async addLine(kind: 'output' | 'error', type: string, pieces: (string | Buffer)[]): Promise<void> {
    if (!this.current || this.current.type !== type || this.current.kind !== kind || this.current.count >= MAX_FILE_RESOURCES) {
      await this.close();
      this.current = { kind, type, count: 0, bytes: 0, seq: 0 };
    }
    let bytes = 1;
    for (const p of pieces) bytes += typeof p === 'string' ? Buffer.byteLength(p) : p.length;
    if (this.used + bytes > PART_BYTES) await this.flush();
    this.current.count++;
    if (bytes > PART_BYTES) {
      // A resource larger than a part (a note with its attachment inline): a part of its own.
      await this.store(Buffer.concat([...pieces.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)), NEWLINE]));
      return;
    }
    const buf = this.buffers[this.which];
    let at = this.used;
    for (const p of pieces) at += typeof p === 'string' ? buf.write(p, at) : p.copy(buf, at);
    buf[at] = 0x0a;
    this.used += bytes;
  }

  /** Closes the file being written (its last part stored, its row made). */
  async close(): Promise<void> {
    const f = this.current;
    if (!f) return;
    await this.flush();
    await this.storing;
    this.current = null;
    if (!f.count) return;
    const fileNo = ++this.fileNo;
    const { rowCount } = await this.pool.query(insertFile(this.exportId, fileNo, f.kind, f.type, f.count, f.bytes));
    if (rowCount !== 1) throw new ExportCancelled();
    this.files.push({ fileNo, kind: f.kind, type: f.type, count: f.count });
  }

  /** Stores the part filled so far, and turns to the other buffer. */
  private async flush(): Promise<void> {
    if (!this.current || !this.used) return;
    const body = this.buffers[this.which].subarray(0, this.used);
    this.which = 1 - this.which;
    this.used = 0;
    await this.store(body);
  }

  private async store(body: Buffer): Promise<void> {
    const f = this.current!;
    // The part before this one is stored first (parts in order, at most one in flight), which
    // also frees the buffer the next part fills.
    await this.storing;
    // Parts are numbered under the file's number to come (files are numbered as they close).
    const head = partRow(this.exportId, this.fileNo + 1, f.seq++, body.length);
    f.bytes += body.length;
    const storing = this.copyPart(head, body);
    // Awaited by the next store or by close; a failure is theirs to throw (never unheard).
    storing.catch(() => {});
    this.storing = storing;
  }

  /**
   * One part stored by a COPY of its row (./copy.ts), its bytes written to the connection as they are.
   * An export deleted meanwhile has no row for the part to refer to (its foreign key): cancelled.
   */
  private async copyPart(head: Buffer, body: Buffer): Promise<void> {
    const client = await this.pool.connect();
    try {
      const stream = client.query(copyFrom(PART_COPY));
      stream.write(head);
      stream.write(body);
      stream.end(PART_TRAILER);
      await finished(stream);
    } catch (err) {
      if ((err as { code?: string }).code === FOREIGN_KEY_VIOLATION) throw new ExportCancelled();
      throw err;
    } finally {
      client.release();
    }
  }
}

const FOREIGN_KEY_VIOLATION = '23503';
