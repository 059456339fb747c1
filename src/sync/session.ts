/**
 * Requests to one health system for one connection, as a careful client makes them:
 * - the access token is refreshed when it has expired (or is within REFRESH_EARLY_MS of it) and on a
 *   401, never on every run; one refresh at a time (requests refused meanwhile retry with the new
 *   token), and never twice within a minute for the connection (Oracle Health throttles refreshes: a
 *   401 that soon after one waits the minute out); the new tokens are stored (`onRefreshed`) before
 *   they are used; a system that does not rotate its refresh token (no refresh_token in the answer)
 *   keeps the old one; a refresh the system refuses is `NeedsReauth` (the person must connect again);
 * - 5xx, network errors and timeouts are retried with exponential backoff and jitter, a bounded
 *   number of times; a 429 throttles the system for every process (src/sync/rate-limit.ts: until
 *   Retry-After, else the top of the next minute) and the request takes its turn after that;
 * - each system gets at most `concurrency` requests at once from this process, and its rate from the
 *   shared limiter (every process together; token calls count too); without one, `ratePerSecond`
 *   a second from this process;
 * - a refusal (4xx) is a SourceError that carries the answer's body (the OperationOutcome), for
 *   src/sync/refusal.ts to classify;
 * - every request goes through the app's outbound fetch (src/net/outbound.ts): an address it may not
 *   reach is a SourceError, not retried.
 */
import * as oauth from 'oauth4webapi';
import { ConnectError, refresh, type SystemClient, type Tokens } from '../connect/client.ts';
import { isRefusal, type OutboundFetch } from '../net/outbound.ts';
import { errorBody, readCapped, reasonOf, retryAfterMs } from './answers.ts';
import { systemKey, type SystemLimiter } from './rate-limit.ts';
import { MIN_REFRESH_GAP_MS, RefreshTimes } from './refresh-times.ts';
import { NeedsReauth, SourceError, TooLarge } from './source-errors.ts';
import { SystemSlots } from './system-slots.ts';

export { NeedsReauth, SourceError, TooLarge } from './source-errors.ts';

export interface SessionOptions {
  attempts: number;
  backoffMs: number;
  timeoutMs: number;
  concurrency: number;
  /** Requests a second to a system from this process, when no shared limiter is given. */
  ratePerSecond: number;
  /** Refreshes of one connection at least this far apart (ms; 60 s unless set: tests shorten it). */
  refreshGapMs?: number;
}

/**
 * What the sessions of one process share: the per-system slots and the refresh times. Made once by
 * whoever builds the sync's dependencies (plugins/sync.ts) and given to every session.
 */
export interface SessionShared {
  slots: SystemSlots;
  refreshes: RefreshTimes;
}

export function createSessionShared(): SessionShared {
  return { slots: new SystemSlots(), refreshes: new RefreshTimes() };
}

export const DEFAULT_SESSION: SessionOptions = { attempts: 5, backoffMs: 500, timeoutMs: 30_000, concurrency: 4, ratePerSecond: 50 };
/** An access token this close to its expiry is refreshed before it is sent. */
const REFRESH_EARLY_MS = 10_000;
/** Without a shared limiter, a Retry-After is heeded up to this long. */
const MAX_RETRY_AFTER_S = 60;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class SourceSession {
  private readonly fetch: OutboundFetch;
  private readonly sc: SystemClient;
  private tokens: Tokens;
  private readonly onRefreshed: (t: Tokens) => Promise<void>;
  private readonly o: SessionOptions;
  private readonly limiter?: SystemLimiter;
  private readonly key: string;
  private readonly shared: SessionShared;
  /** When this connection's tokens were last refreshed (ms; 0: not known to be recent). */
  private lastRefresh: number;
  /** The refresh under way, which every request that needs a new token waits for. */
  private refreshing?: Promise<void>;
  /** The system refused the refresh token: every request after that ends the same way. */
  private refused?: NeedsReauth;
  /** Requests made (retries included), for the run's log; token calls not included. */
  requests = 0;
  /** Token refreshes made. */
  refreshes = 0;
  private get gap(): number {
    return this.o.refreshGapMs ?? MIN_REFRESH_GAP_MS;
  }

  /** `shared`: what the sessions of the process share (one per process, passed in). */
  constructor(
    sc: SystemClient,
    tokens: Tokens,
    onRefreshed: (t: Tokens) => Promise<void>,
    o: SessionOptions = DEFAULT_SESSION,
    limiter: SystemLimiter | undefined,
    shared: SessionShared,
  ) {
    // The same outbound fetch as the client's token requests.
    this.fetch = sc.options[oauth.customFetch];
    this.sc = sc;
    this.tokens = tokens;
    this.onRefreshed = onRefreshed;
    this.o = o;
    this.limiter = limiter;
    this.key = systemKey(sc.fhirBase);
    this.shared = shared;
    this.lastRefresh = shared.refreshes.get(tokens.accessToken) ?? 0;
  }

  /** The JSON body of a GET of `url` (absolute, at the system). */
  async getJson(url: string): Promise<unknown> {
    return this.request(url, 'application/fhir+json', (res) => res.json());
  }

  /**
   * The body of a GET of `url` asking for `accept`, at most `maxBytes` of it (TooLarge past that,
   * read no further), with the content type the system gave.
   */
  async getBytes(url: string, accept: string, maxBytes: number): Promise<{ contentType: string; bytes: Buffer }> {
    return this.request(url, accept, async (res) => ({ contentType: res.headers.get('content-type') ?? '', bytes: await readCapped(res, maxBytes) }));
  }

  /** The access token to send: refreshed first when it has expired or is about to. */
  private async currentToken(): Promise<string> {
    if (this.refreshing) await this.refreshing.catch(() => {});
    if (this.refused) throw this.refused;
    const t = this.tokens;
    const expiring = t.expiresAt && t.expiresAt.getTime() - Date.now() < REFRESH_EARLY_MS;
    // A system whose tokens live shorter than the refresh gap: the token is used until it is refused.
    if (expiring && t.refreshToken && Date.now() - this.lastRefresh >= this.gap) await this.renew(t.accessToken);
    return this.tokens.accessToken;
  }

  /** New tokens, unless they were renewed since `used` was sent; one refresh at a time. */
  private renew(used: string): Promise<void> {
    if (this.refused) return Promise.reject(this.refused);
    if (this.refreshing) return this.refreshing;
    if (this.tokens.accessToken !== used) return Promise.resolve();
    this.refreshing = this.refreshNow().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async refreshNow(): Promise<void> {
    if (!this.tokens.refreshToken)
      throw new NeedsReauth('The access token expired and the system gave no refresh token: the person must connect again.');
    // Never twice within a minute: the last refresh's token was refused soon after it; wait the rest.
    const wait = this.lastRefresh + this.gap - Date.now();
    if (wait > 0) await sleep(wait);
    // Token calls take the system's rate too, and a 429 there throttles the system.
    let status = 0;
    const limited: OutboundFetch = async (url, init) => {
      await this.limiter?.take(this.key);
      const res = await this.fetch(url, init);
      status = res.status;
      if (res.status === 429) await this.limiter?.throttled(this.key, retryAfterMs(res));
      return res;
    };
    const sc: SystemClient = { ...this.sc, options: { ...this.sc.options, [oauth.customFetch]: limited } };
    for (let attempt = 1; ; attempt++) {
      status = 0;
      let tokens: Tokens;
      try {
        this.refreshes++;
        tokens = await refresh(sc, this.tokens.refreshToken!);
      } catch (err) {
        const code = err instanceof ConnectError ? err.code : 'server_error';
        const transient = status === 0 || status === 429 || status >= 500 || code === 'server_error' || code === 'temporarily_unavailable';
        if (!transient) throw (this.refused = new NeedsReauth(`The system refused the refresh token (${code}): the person must connect again.`));
        if (attempt >= this.o.attempts) throw err;
        if (status !== 429 || !this.limiter) await sleep(this.o.backoffMs * 2 ** (attempt - 1) * (0.5 + Math.random()));
        continue;
      }
      // Stored before it is used: a rotated refresh token is the only one that works from now on.
      await this.onRefreshed(tokens);
      this.lastRefresh = Date.now();
      this.shared.refreshes.remember(tokens.accessToken, this.lastRefresh);
      this.tokens = tokens;
      return;
    }
  }

  /** A GET of `url`, its answer read by `read` while the request holds its slot. */
  private async request<T>(url: string, accept: string, read: (res: Response) => Promise<T>): Promise<T> {
    /** This request's own retry after a refresh: a second 401 then means the new token is refused too. */
    let renewed = false;
    for (let attempt = 1; ; attempt++) {
      const token = await this.currentToken();
      const release = await this.shared.slots.acquire(this.sc.fhirBase, this.o, !this.limiter);
      let res: Response | undefined;
      let failure: string;
      try {
        await this.limiter?.take(this.key);
        this.requests++;
        res = await this.fetch(url, { headers: { accept, authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(this.o.timeoutMs) });
        if (res.ok) return await read(res);
        failure = `HTTP ${res.status}`;
      } catch (err) {
        if (err instanceof TooLarge) throw err;
        // An address the agent refuses stays refused: not worth a retry.
        if (isRefusal(err)) throw new SourceError(0, `${url}: ${err.message}`);
        failure = (err as Error).name === 'TimeoutError' ? `no answer in ${this.o.timeoutMs} ms` : (err as Error).message;
        // (A body cut off after a 200 is retried like a network error.)
        res = undefined;
      } finally {
        release();
      }
      const status = res?.status ?? 0;
      if (status === 401) {
        await res?.body?.cancel().catch(() => {});
        if (renewed) throw new NeedsReauth('The system refuses the access token even after a refresh: the person must connect again.');
        renewed = true;
        if (!this.tokens.refreshToken)
          throw new NeedsReauth('The system refused the access token and gave no refresh token: the person must connect again.');
        await this.renew(token);
        attempt--;
        continue;
      }
      const transient = status === 0 || status === 429 || status >= 500;
      if (!transient || attempt >= this.o.attempts) {
        const { body, contentType } = res ? await errorBody(res) : {};
        throw new SourceError(status, `${url}: ${failure}${reasonOf(body)}${transient ? `, ${attempt} times` : ''}`, body, contentType);
      }
      await res?.body?.cancel().catch(() => {});
      if (status === 429) {
        const after = res ? retryAfterMs(res) : undefined;
        // Shared: every process's requests to the system wait for the block's end (take() above).
        if (this.limiter) await this.limiter.throttled(this.key, after);
        else
          await sleep(
            after !== undefined ? Math.min(after, MAX_RETRY_AFTER_S * 1000) : this.o.backoffMs * 2 ** (attempt - 1) * (0.5 + Math.random()),
          );
        continue;
      }
      await sleep(this.o.backoffMs * 2 ** (attempt - 1) * (0.5 + Math.random()));
    }
  }
}
