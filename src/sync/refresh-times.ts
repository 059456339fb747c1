/**
 * When each access token this process got by a refresh was got (by its SHA-256): a later run of the
 * same connection (a new session) knows how recent its last refresh is. Entries older than the gap
 * are dropped. One per process, made by whoever builds the sync's dependencies (plugins/sync.ts).
 */
import { createHash } from 'node:crypto';

/** Refreshes of one connection are at least this far apart. */
export const MIN_REFRESH_GAP_MS = 60_000;

const tokenKey = (accessToken: string) => createHash('sha256').update(accessToken).digest('base64url');

export class RefreshTimes {
  private readonly refreshedAt = new Map<string, number>();

  /** When the token was got by a refresh in this process (ms), if it was. */
  get(accessToken: string): number | undefined {
    return this.refreshedAt.get(tokenKey(accessToken));
  }

  remember(accessToken: string, at: number): void {
    for (const [k, when] of this.refreshedAt) if (at - when > MIN_REFRESH_GAP_MS) this.refreshedAt.delete(k);
    this.refreshedAt.set(tokenKey(accessToken), at);
  }
}
