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
import { createHash } from 'node:crypto';
import * as oauth from 'oauth4webapi';
import { ConnectError, refresh, type SystemClient, type Tokens } from '../connect/client.ts';
import { isRefusal, type OutboundFetch } from '../net/outbound.ts';
import { systemKey, type SystemLimiter } from './rate-limit.ts';

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
/** An answer longer than the caller's limit: not read past it. */
export class TooLarge extends Error {
  /** The size the system stated (Content-Length), when it did. */
  readonly size?: number;
  constructor(message: string, size?: number) {
    super(message);
    this.size = size;
  }
}

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

export const DEFAULT_SESSION: SessionOptions = { attempts: 5, backoffMs: 500, timeoutMs: 30_000, concurrency: 4, ratePerSecond: 50 };
/** An access token this close to its expiry is refreshed before it is sent. */
const REFRESH_EARLY_MS = 10_000;
/** Refreshes of one connection are at least this far apart. */
const MIN_REFRESH_GAP_MS = 60_000;
/** Without a shared limiter, a Retry-After is heeded up to this long. */
const MAX_RETRY_AFTER_S = 60;
/** A refusal's body is read up to this many bytes (an OperationOutcome is far smaller). */
const MAX_ERROR_BODY = 64 * 1024;
const MAX_ERROR_TEXT = 2000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Per FHIR base, in this process: requests in flight, who waits for a slot, and when the next may start (without a shared limiter). */
const perSystem = new Map<string, { n: number; waiting: (() => void)[]; nextAt: number }>();

async function acquire(base: string, o: SessionOptions, spaced: boolean): Promise<() => void> {
  let slot = perSystem.get(base);
  if (!slot) perSystem.set(base, (slot = { n: 0, waiting: [], nextAt: 0 }));
  const s = slot;
  while (s.n >= o.concurrency) await new Promise<void>((r) => s.waiting.push(r));
  s.n++;
  if (spaced) {
    // The rate: each request takes the next free instant, 1/ratePerSecond after the one before.
    const now = Date.now();
    const at = Math.max(now, s.nextAt);
    s.nextAt = at + 1000 / o.ratePerSecond;
    if (at > now) await sleep(at - now);
  }
  return () => {
    s.n--;
    s.waiting.shift()?.();
  };
}

/**
 * When each access token this process got by a refresh was got (by its SHA-256): a later run of the
 * same connection (a new session) knows how recent its last refresh is. Entries older than the gap
 * are dropped.
 */
const refreshedAt = new Map<string, number>();
const tokenKey = (accessToken: string) => createHash('sha256').update(accessToken).digest('base64url');
function rememberRefresh(accessToken: string, at: number): void {
  for (const [k, when] of refreshedAt) if (at - when > MIN_REFRESH_GAP_MS) refreshedAt.delete(k);
  refreshedAt.set(tokenKey(accessToken), at);
}

/** Retry-After in ms (seconds or an HTTP date), or undefined. */
function retryAfterMs(res: Response): number | undefined {
  const v = res.headers.get('retry-after');
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

/** The body of a refused request: parsed JSON when it says JSON, else at most 2,000 characters of text. */
async function errorBody(res: Response): Promise<{ body?: unknown; contentType?: string }> {
  const contentType = res.headers.get('content-type') ?? undefined;
  let text: string;
  try {
    text = (await readCapped(res, MAX_ERROR_BODY)).toString('utf8');
  } catch {
    return { contentType };
  }
  if (!text) return { contentType };
  if (/json/i.test(contentType ?? '') || /^\s*[{[]/.test(text)) {
    try {
      return { body: JSON.parse(text), contentType };
    } catch {
      // Not JSON after all: its text.
    }
  }
  return { body: text.slice(0, MAX_ERROR_TEXT), contentType };
}

/** The body's bytes, at most `max` of them (TooLarge past that, with the rest left unread). */
async function readCapped(res: Response, max: number): Promise<Buffer> {
  const stated = Number(res.headers.get('content-length'));
  if (Number.isFinite(stated) && stated > max) {
    await res.body?.cancel().catch(() => {});
    throw new TooLarge(`${stated} bytes, past the limit of ${max}`, stated);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  if (!res.body) return Buffer.alloc(0);
  for await (const chunk of res.body) {
    n += chunk.byteLength;
    if (n > max) {
      await res.body.cancel().catch(() => {});
      throw new TooLarge(`more than ${max} bytes`);
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/** A short reason for the message: the OperationOutcome's first diagnostics or details text. */
function reasonOf(body: unknown): string {
  const issue = (body as { resourceType?: string; issue?: { diagnostics?: string; details?: { text?: string } }[] } | undefined)?.issue?.[0];
  const said = issue?.diagnostics ?? issue?.details?.text;
  return typeof said === 'string' && said ? ` (${said.slice(0, 200)})` : '';
}

export class SourceSession {
  private readonly fetch: OutboundFetch;
  private readonly sc: SystemClient;
  private tokens: Tokens;
  private readonly onRefreshed: (t: Tokens) => Promise<void>;
  private readonly o: SessionOptions;
  private readonly limiter?: SystemLimiter;
  private readonly key: string;
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

  constructor(sc: SystemClient, tokens: Tokens, onRefreshed: (t: Tokens) => Promise<void>, o: SessionOptions = DEFAULT_SESSION, limiter?: SystemLimiter) {
    // The same outbound fetch as the client's token requests.
    this.fetch = sc.options[oauth.customFetch];
    this.sc = sc;
    this.tokens = tokens;
    this.onRefreshed = onRefreshed;
    this.o = o;
    this.limiter = limiter;
    this.key = systemKey(sc.fhirBase);
    this.lastRefresh = refreshedAt.get(tokenKey(tokens.accessToken)) ?? 0;
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
    if (!this.tokens.refreshToken) throw new NeedsReauth('The access token expired and the system gave no refresh token: the person must connect again.');
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
      rememberRefresh(tokens.accessToken, this.lastRefresh);
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
      const release = await acquire(this.sc.fhirBase, this.o, !this.limiter);
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
        if (!this.tokens.refreshToken) throw new NeedsReauth('The system refused the access token and gave no refresh token: the person must connect again.');
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
        else await sleep(after !== undefined ? Math.min(after, MAX_RETRY_AFTER_S * 1000) : this.o.backoffMs * 2 ** (attempt - 1) * (0.5 + Math.random()));
        continue;
      }
      await sleep(this.o.backoffMs * 2 ** (attempt - 1) * (0.5 + Math.random()));
    }
  }
}
