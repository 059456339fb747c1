/**
 * The directory on a server's start: on a start where the shipped lists in `directory/lantern/`
 * (by a hash of their content) have not been imported yet (trb_directory_import), they are
 * imported in the background while the server already serves everything else; several processes
 * starting together import once (an advisory lock). Then the search index is built and the FHIR
 * view (src/directory/fhir-view.ts) catches up, on every start.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import type { FastifyBaseLogger } from 'fastify';
import { importDirectory } from './importer.ts';
import type { DirectoryIndexCache } from './search.ts';
import { inTransaction } from '../storage/transaction.ts';
import * as sql from './sql.ts';

/** The shipped lists, beside the code (not the working directory). */
export const SHIPPED_DIRECTORY = path.resolve(import.meta.dirname, '..', '..', 'directory', 'lantern');
const AUTOLOAD_LOCK = 0x7472_6469_72; // any constant

export interface AutoloadDeps {
  pool: pg.Pool;
  /** The operator's outbound allow-list (a base it names is accepted although private). */
  allow: readonly string[];
  log: FastifyBaseLogger;
}

/** The shipped lists' files in name order, and a SHA-256 over their names and contents. */
export function shippedDirectory(dir = SHIPPED_DIRECTORY): { sources: { name: string; content: string }[]; sha256: string } {
  const hash = createHash('sha256');
  const sources = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => {
      const content = fs.readFileSync(path.join(dir, f), 'utf8');
      hash.update(`${f}\0${Buffer.byteLength(content)}\0`).update(content);
      return { name: f, content };
    });
  return { sources, sha256: hash.digest('hex') };
}

/**
 * Imports the shipped lists unless an import of exactly these files is recorded: whatever else the
 * directory holds (the sandboxes write theirs first) does not count, and changed lists (an
 * upgrade) are imported again (the importer only writes what changed). Never throws: a failure is
 * logged.
 */
export async function autoloadDirectory(deps: AutoloadDeps): Promise<void> {
  const started = Date.now();
  try {
    const summary = await inTransaction(deps.pool, async (c) => {
      // One process imports; the others wait here, then find the import recorded.
      await c.query(sql.advisoryLock(AUTOLOAD_LOCK));
      const shipped = shippedDirectory();
      const { rows } = await c.query<{ at: Date }>(sql.shippedImport(shipped.sha256));
      if (rows.length) {
        deps.log.info(
          { sha256: shipped.sha256.slice(0, 12), importedAt: rows[0].at },
          'health-system directory: the shipped lists are already imported',
        );
        return null;
      }
      deps.log.info({ files: shipped.sources.length, sha256: shipped.sha256.slice(0, 12) }, 'loading the health-system directory');
      const s = await importDirectory(
        deps.pool,
        shipped.sources,
        (stage, done, total) => {
          if (stage === 'write') deps.log.info({ done, total }, 'directory: systems written');
        },
        { allow: deps.allow },
      );
      await c.query(sql.recordShippedImport(shipped.sha256, { ...s, rejected: s.rejected.length }));
      return s;
    });
    if (summary) {
      const { rejected, ...counts } = summary;
      deps.log.info({ ...counts, rejectedRows: rejected.length, ms: Date.now() - started }, 'health-system directory loaded');
    }
  } catch (err) {
    deps.log.error({ err: String(err) }, 'the health-system directory could not be loaded; run npx tributary directory import directory/lantern');
  }
}

export interface StartDeps extends AutoloadDeps {
  index: DirectoryIndexCache;
  /** Brings the FHIR view up to date (src/directory/view-refresh.ts). */
  updateView(): Promise<void>;
}

/**
 * The directory's start: the shipped lists imported first (with `autoload`), then the search
 * index built and the FHIR view brought up to date (it catches up here after an import that was
 * interrupted). Settles when the index is built (or could not be): the search answers then; the
 * view goes on by itself.
 */
export async function startDirectory(deps: StartDeps, autoload: boolean): Promise<void> {
  if (autoload) await autoloadDirectory(deps);
  // The search index is built before the first search needs it.
  const built = deps.index.current().then(
    () => undefined,
    (err) => deps.log.error({ err: String(err) }, 'directory: the search index could not be built'),
  );
  void deps.updateView();
  await built;
}
