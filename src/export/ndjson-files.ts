/**
 * An export's NDJSON files as they are written: lines gathered into parts of about 1 MiB, each
 * part stored as soon as it is full (so memory holds one part, whatever the export's size), a
 * type's file closed and the next begun past MAX_FILE_RESOURCES.
 */
import type pg from 'pg';
import { insertFile, insertPart } from './sql.ts';

/** The size of a stored part. */
export const PART_BYTES = 1 << 20;
/** Resources per file: a client can download a large type's files in parallel, and resume per file. */
export const MAX_FILE_RESOURCES = 100_000;

/** The export is gone (deleted, so cancelled) or no longer in progress: stop writing. */
export class ExportCancelled extends Error {}

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
  async add(kind: 'output' | 'error', type: string, json: string): Promise<void> {
    if (!this.current || this.current.type !== type || this.current.kind !== kind || this.current.count >= MAX_FILE_RESOURCES) {
      await this.close();
      this.current = { kind, type, count: 0, bytes: 0, seq: 0 };
    }
    const bytes = Buffer.byteLength(json) + 1;
    if (this.used + bytes > PART_BYTES) await this.flush();
    this.current.count++;
    if (bytes > PART_BYTES) {
      // A resource larger than a part (a note with its attachment inline): a part of its own.
      await this.store(Buffer.from(`${json}\n`));
      return;
    }
    const buf = this.buffers[this.which];
    buf.write(json, this.used);
    buf[this.used + bytes - 1] = 0x0a;
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
    const part = insertPart(this.exportId, this.fileNo + 1, f.seq++, body);
    f.bytes += body.length;
    const storing = this.pool.query(part).then(({ rowCount }) => {
      if (rowCount !== 1) throw new ExportCancelled();
    });
    // Awaited by the next store or by close; a failure is theirs to throw (never unheard).
    storing.catch(() => {});
    this.storing = storing;
  }
}
