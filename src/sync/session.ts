/**
 * Requests to one health system for one connection, as a careful client makes them:
 * - the access token is refreshed before it expires and once on a 401; a refresh the system
 *   refuses is `NeedsReauth` (the person must connect again);
 * - 5xx, network errors and timeouts are retried with exponential backoff and jitter, a bounded
 *   number of times; 429 waits for Retry-After (at most a minute);
 * - each system gets at most `concurrency` requests at once, and `ratePerSecond` a second, from
 *   this process (requests are spaced evenly; several worker processes each keep their own limit).
 * - every request goes through the app's outbound fetch (src/net/outbound.ts): an address it may not
 *   reach is a SourceError, not retried.
 */
import * as oauth from 'oauth4webapi';
import { ConnectError, refresh, type SystemClient, type Tokens } from '../connect/client.ts';
import { isRefusal, type OutboundFetch } from '../net/outbound.ts';
import type { SystemLimiter } from './rate-limit.ts';

export class NeedsReauth extends Error {}
export class SourceError extends Error {
  readonly status: number;
  /** The answer's body: parsed JSON when it is JSON (an OperationOutcome, mostly), else its text, at most 2,000 characters. */
  readonly body?: unknown;
  readonly contentType?: string;
  constructor(status: number, message: string, body?: unknown, contentType?: string) {
    super(message);
    this.status = status;
    this.body = body;
    this.contentType = contentType;
  }
}

export interface SessionOptions {
  attempts: number;
  backoffMs: number;
  timeoutMs: number;
  concurrency: number;
  ratePerSecond: number;
}

export const DEFAULT_SESSION: SessionOptions = { attempts: 5, backoffMs: 500, timeoutMs: 30_000, concurrency: 4, ratePerSecond: 50 };
const REFRESH_EARLY_MS = 60_000;
const MAX_RETRY_AFTER_S = 60;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Per FHIR base, in this process: requests in flight, who waits for a slot, and when the next may start. */
const perSystem = new Map<string, { n: number; waiting: (() => void)[]; nextAt: number }>();

async function acquire(base: string, o: SessionOptions): Promise<() => void> {
  let slot = perSystem.get(base);
  if (!slot) perSystem.set(base, (slot = { n: 0, waiting: [], nextAt: 0 }));
  const s = slot;
  while (s.n >= o.concurrency) await new Promise<void>((r) => s.waiting.push(r));
  s.n++;
  // The rate: each request takes the next free instant, 1/ratePerSecond after the one before.
  const now = Date.now();
  const at = Math.max(now, s.nextAt);
  s.nextAt = at + 1000 / o.ratePerSecond;
  if (at > now) await sleep(at - now);
  return () => {
    s.n--;
    s.waiting.shift()?.();
  };
}


export class SourceSession {
  private readonly fetch: OutboundFetch;
  private readonly sc: SystemClient;
  private tokens: Tokens;
  private readonly onRefreshed: (t: Tokens) => Promise<void>;
  private readonly o: SessionOptions;
  /** Requests made (retries included), for the run's log. */
  requests = 0;

  private readonly limiter?: SystemLimiter;

  constructor(sc: SystemClient, tokens: Tokens, onRefreshed: (t: Tokens) => Promise<void>, o: SessionOptions = DEFAULT_SESSION, limiter?: SystemLimiter) {
    this.limiter = limiter;
    // The same outbound fetch as the client's token requests.
    this.fetch = sc.options[oauth.customFetch];
    this.sc = sc;
    this.tokens = tokens;
    this.onRefreshed = onRefreshed;
    this.o = o;
  }

  private async renew(): Promise<void> {
    if (!this.tokens.refreshToken) throw new NeedsReauth('The access token expired and the system gave no refresh token: the person must connect again.');
    try {
      this.tokens = await refresh(this.sc, this.tokens.refreshToken);
    } catch (err) {
      if (err instanceof ConnectError && err.code !== 'server_error' && err.code !== 'temporarily_unavailable') {
        throw new NeedsReauth(`The system refused the refresh token (${err.code}): the person must connect again.`);
      }
      throw err;
    }
    await this.onRefreshed(this.tokens);
  }

  /** The JSON body of a GET of `url` (absolute, at the system). */
  async getJson(url: string): Promise<unknown> {
    if (this.tokens.expiresAt && this.tokens.expiresAt.getTime() - Date.now() < REFRESH_EARLY_MS && this.tokens.refreshToken) await this.renew();
    let renewed = false;
    for (let attempt = 1; ; attempt++) {
      const release = await acquire(this.sc.fhirBase, this.o);
      let res: Response | undefined;
      let failure: string;
      try {
        this.requests++;
        res = await this.fetch(url, { headers: { accept: 'application/fhir+json', authorization: `Bearer ${this.tokens.accessToken}` }, signal: AbortSignal.timeout(this.o.timeoutMs) });
        if (res.ok) return await res.json();
        failure = `HTTP ${res.status}`;
      } catch (err) {
        // An address the agent refuses stays refused: not worth a retry.
        if (isRefusal(err)) throw new SourceError(0, `${url}: ${err.message}`);
        failure = (err as Error).name === 'TimeoutError' ? `no answer in ${this.o.timeoutMs} ms` : (err as Error).message;
      } finally {
        release();
      }
      const status = res?.status ?? 0;
      await res?.body?.cancel().catch(() => {});
      if (status === 401 && !renewed) {
        renewed = true;
        await this.renew();
        continue;
      }
      if (status === 401) throw new NeedsReauth('The system refuses the access token even after a refresh: the person must connect again.');
      const transient = status === 0 || status === 429 || status >= 500;
      if (!transient) throw new SourceError(status, `${url}: ${failure}`);
      if (attempt >= this.o.attempts) throw new SourceError(status, `${url}: ${failure}, ${attempt} times`);
      const retryAfter = Number(res?.headers.get('retry-after'));
      const wait =
        status === 429 && Number.isFinite(retryAfter) && retryAfter >= 0
          ? Math.min(retryAfter, MAX_RETRY_AFTER_S) * 1000
          : this.o.backoffMs * 2 ** (attempt - 1) * (0.5 + Math.random());
      await sleep(wait);
    }
  }
}
