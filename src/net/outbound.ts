/**
 * Outbound HTTP: every request Tributary sends to a host it does not control (a health system's
 * discovery, token and FHIR endpoints, the sync, the status probe, webhooks, a directory import by
 * URL) goes through one `fetch` of this module's making, so that no directory entry, webhook URL,
 * redirect or `next` link can turn the server against its own network (SSRF):
 * - an address that is not public unicast (private, loopback, link-local, unique-local, CGNAT,
 *   multicast, unspecified, reserved, documentation, NAT64/6to4/Teredo, and the IPv4-mapped and
 *   -compatible forms of those) is refused, checked on every address a name resolves to, at connect
 *   time (an undici Agent whose connector checks IP literals and looks names up itself): a name
 *   cannot pass the check and then resolve elsewhere, since the address checked is the address dialled;
 * - redirects are followed here, at most MAX_REDIRECTS, each hop checked again; Authorization and
 *   Cookie are dropped when a redirect leaves the origin; a 303 (and a 301/302 of a POST) becomes a GET;
 * - the operator's allow-list (OUTBOUND_ALLOW) names hosts, host:port pairs and CIDR ranges that may
 *   be reached although private (a FHIR server on the LAN, the sandboxes of this very process);
 * - connections are kept alive per origin (the check costs only when a connection is made);
 * - every failure is an OutboundError with a stable code, whose message names the host as the URL
 *   gave it, never the address it resolved to nor the system's own error text.
 *
 * undici's own fetch is used with the Agent (Node's bundled fetch is another undici's, whose
 * dispatcher interface need not match); its Response is a WHATWG Response (oauth4webapi takes it).
 * See: https://owasp.org/www-community/attacks/Server_Side_Request_Forgery
 */
import dns from 'node:dns';
import net from 'node:net';
import ipaddr from 'ipaddr.js';
import { Agent, buildConnector, fetch as undiciFetch } from 'undici';

/** A `fetch` with the platform's signature; every outbound caller takes one of these. */
export type OutboundFetch = typeof globalThis.fetch;

export interface OutboundPolicy {
  /** Hosts (`name`, `name:port`) and address ranges (CIDR) that may be reached even when private. */
  allow: readonly string[];
  /** Connecting (DNS, TCP, TLS) may take this long (default 10 s). */
  connectTimeoutMs?: number;
  /** The response's headers must come within this long of the request (default 30 s), and each body chunk too. */
  responseTimeoutMs?: number;
}

export interface Outbound {
  fetch: OutboundFetch;
  /** The allow-list in force (the operator's, and this server's own origin when it serves the sandboxes). */
  allow: readonly string[];
  close(): Promise<void>;
}

export type OutboundErrorCode = 'blocked_address' | 'too_many_redirects' | 'redirect_refused' | 'bad_url' | 'unreachable' | 'timeout' | 'tls_error';

/** Why an outbound request was not made or got no answer; `host` as the URL named it. */
export class OutboundError extends Error {
  override name = 'OutboundError';
  readonly code: OutboundErrorCode;
  readonly host: string;
  constructor(code: OutboundErrorCode, host: string, message: string) {
    super(message);
    this.code = code;
    this.host = host;
  }
}

/**
 * Whether an error is the agent's refusal (an address it may not reach, a URL it cannot fetch, a
 * redirect it does not follow): sending the request again changes nothing, so it is not retried.
 */
export function isRefusal(err: unknown): err is OutboundError {
  return err instanceof OutboundError && err.code !== 'unreachable' && err.code !== 'timeout';
}

export const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Headers that carry credentials: not sent on to another origin. */
const CREDENTIALS = ['authorization', 'cookie', 'proxy-authorization'];

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];
interface Allow {
  /** Host names and IP literals (normalized) allowed on any port. */
  hosts: Set<string>;
  /** `host:port` pairs allowed. */
  hostPorts: Set<string>;
  ranges: Range[];
}

/** An address as one form: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as its IPv4. */
function parseAddress(address: string): ipaddr.IPv4 | ipaddr.IPv6 {
  const a = ipaddr.parse(address.replace(/^\[|\]$/g, ''));
  return a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress() ? (a as ipaddr.IPv6).toIPv4Address() : a;
}

const hostKey = (hostname: string): string => {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, '');
  return net.isIP(h) ? parseAddress(h).toString() : h.replace(/\.$/, '');
};

/**
 * The allow-list's entries checked and compiled; throws an Error naming the first entry that is
 * none of `host`, `host:port` ( `[v6]:port` ) or a CIDR range.
 */
export function parseAllow(entries: readonly string[]): Allow {
  const out: Allow = { hosts: new Set(), hostPorts: new Set(), ranges: [] };
  for (const raw of entries) {
    const entry = raw.trim();
    if (!entry) continue;
    if (entry.includes('/')) {
      try {
        const [addr, bits] = ipaddr.parseCIDR(entry);
        out.ranges.push([
          addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() ? (addr as ipaddr.IPv6).toIPv4Address() : addr,
          addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() ? bits - 96 : bits,
        ]);
        continue;
      } catch {
        throw new Error(`"${entry}" is not a CIDR range (such as 10.0.0.0/8 or fd00::/8)`);
      }
    }
    let u: URL;
    try {
      u = new URL(`http://${net.isIP(entry) === 6 ? `[${entry}]` : entry}`);
    } catch {
      throw new Error(`"${entry}" is not a host, host:port or CIDR range`);
    }
    if (u.pathname !== '/' || u.search || u.username || !u.hostname) throw new Error(`"${entry}" is not a host, host:port or CIDR range`);
    const host = hostKey(u.hostname);
    if (/:\d+$/.test(entry)) out.hostPorts.add(`${host}:${u.port || '80'}`);
    else out.hosts.add(host);
  }
  return out;
}

/**
 * Whether an address is one Tributary may reach without the operator's leave: public unicast only.
 * IPv4-compatible IPv6 (`::a.b.c.d`, deprecated) and every address in ::/96 is refused outright.
 */
export function isPublicAddress(address: string): boolean {
  let a: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    a = parseAddress(address);
  } catch {
    return false;
  }
  if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).parts.slice(0, 6).every((p) => p === 0)) return false;
  return a.range() === 'unicast';
}

function inRanges(address: string, ranges: Range[]): boolean {
  const a = parseAddress(address);
  return ranges.some(([net, bits]) => net.kind() === a.kind() && a.match(net as never, bits));
}

const addressOk = (address: string, allow: Allow) => isPublicAddress(address) || inRanges(address, allow.ranges);
const hostAllowed = (hostname: string, port: string, allow: Allow) =>
  allow.hosts.has(hostKey(hostname)) || allow.hostPorts.has(`${hostKey(hostname)}:${port}`);
const defaultPort = (u: URL) => u.port || (u.protocol === 'https:' ? '443' : '80');

const blocked = (host: string) =>
  new OutboundError(
    'blocked_address',
    host,
    `${host} is not a public address: Tributary does not send requests into private, loopback or link-local networks (the operator may allow it with OUTBOUND_ALLOW).`,
  );

/**
 * Why a directory entry's base is refused before any request (a syntactic check of the URL: the
 * names that are private by definition, and IP literals outside public unicast), or undefined.
 * Names are checked again, resolved, by the agent at request time.
 */
export function privateHostReason(url: URL, allowList: readonly string[] | Allow = []): string | undefined {
  const allow = Array.isArray(allowList) ? parseAllow(allowList as readonly string[]) : (allowList as Allow);
  const host = hostKey(url.hostname);
  if (hostAllowed(url.hostname, defaultPort(url), allow)) return undefined;
  if (net.isIP(host)) return addressOk(host, allow) ? undefined : `a base on a private, loopback or link-local address (${url.hostname})`;
  if (host === 'localhost' || /\.(localhost|local|internal|localdomain|home\.arpa)$/.test(host))
    return `a base on a local network name (${url.hostname})`;
  return undefined;
}

export function createOutbound(policy: OutboundPolicy): Outbound {
  const allow = parseAllow(policy.allow);
  const timeout = policy.connectTimeoutMs ?? 10_000;
  /** Looks the name up and refuses it when any address it has is not allowed. */
  const lookup: net.LookupFunction = (hostname, options, cb) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return cb(err, '', 0);
      if (!addresses.length || addresses.some((a) => !addressOk(a.address, allow))) return cb(blocked(hostname), '', 0);
      if (options.all) (cb as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, addresses);
      else cb(null, addresses[0].address, addresses[0].family);
    });
  };
  const guarded = buildConnector({ timeout, lookup });
  const open = buildConnector({ timeout });
  const connect: buildConnector.connector = (o, cb) => {
    if (hostAllowed(o.hostname, o.port || (o.protocol === 'https:' ? '443' : '80'), allow)) return open(o, cb);
    if (net.isIP(o.hostname)) return addressOk(o.hostname, allow) ? open(o, cb) : cb(blocked(o.hostname), null);
    return guarded(o, cb);
  };
  const agent = new Agent({
    connect,
    headersTimeout: policy.responseTimeoutMs ?? 30_000,
    bodyTimeout: policy.responseTimeoutMs ?? 30_000,
    keepAliveTimeout: 10_000,
  });

  const outboundFetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const req = input instanceof Request ? input : undefined;
    let url: URL;
    try {
      url = new URL(req ? req.url : String(input));
    } catch {
      throw new OutboundError('bad_url', '', 'Not a URL.');
    }
    let method = (init.method ?? req?.method ?? 'GET').toUpperCase();
    const headers = new Headers(init.headers ?? req?.headers);
    let body: RequestInit['body'] = init.body ?? (req?.body ? await req.arrayBuffer() : undefined);
    const mode = init.redirect ?? req?.redirect ?? 'follow';
    const signal = init.signal ?? req?.signal;
    for (let hop = 0; ; hop++) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new OutboundError('bad_url', url.hostname, `Only http and https URLs are fetched (not ${url.protocol}).`);
      // An IP literal is refused before anything is sent (the connector checks it too).
      const host = url.hostname.replace(/^\[|\]$/g, '');
      if (net.isIP(host) && !hostAllowed(url.hostname, defaultPort(url), allow) && !addressOk(host, allow)) throw blocked(url.hostname);
      let res: Response;
      try {
        res = (await undiciFetch(url, {
          ...(init as object),
          method,
          headers,
          body: body as never,
          redirect: 'manual',
          signal,
          dispatcher: agent,
        } as never)) as unknown as Response;
      } catch (err) {
        throw outboundFailure(err, url.hostname);
      }
      const location = res.headers.get('location');
      if (!REDIRECTS.has(res.status) || mode === 'manual' || !location) return res;
      await res.body?.cancel().catch(() => {});
      if (mode === 'error')
        throw new OutboundError('redirect_refused', url.hostname, `${url.hostname} answered with a redirect, which this request does not follow.`);
      if (hop >= MAX_REDIRECTS)
        throw new OutboundError('too_many_redirects', url.hostname, `${url.hostname} redirected more than ${MAX_REDIRECTS} times.`);
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw new OutboundError('bad_url', url.hostname, `${url.hostname} redirected to something that is not a URL.`);
      }
      if (next.origin !== url.origin) for (const h of CREDENTIALS) headers.delete(h);
      // Fetch's rules: a 303 becomes a GET (but HEAD), and so does a 301/302 of a POST.
      if ((res.status === 303 && method !== 'HEAD') || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
        for (const h of ['content-type', 'content-length', 'content-encoding', 'content-language', 'content-location']) headers.delete(h);
      } else if (body instanceof ReadableStream) {
        throw new OutboundError('redirect_refused', url.hostname, `${url.hostname} redirected a request whose body cannot be sent again.`);
      }
      url = next;
    }
  };

  return {
    fetch: outboundFetch as OutboundFetch,
    allow: policy.allow,
    close: () => agent.close(),
  };
}

/**
 * A failed request as an OutboundError naming the host alone (the system's error text may carry the
 * address it dialled: "connect ECONNREFUSED 10.1.2.3:443"); an abort or a caller's timeout stays
 * as it is (callers tell a TimeoutError by its name).
 */
function outboundFailure(err: unknown, host: string): unknown {
  if (err instanceof OutboundError) return err;
  const e = err as Error & { cause?: unknown };
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError') return err;
  const cause = e?.cause as (Error & { code?: string; cause?: unknown; errors?: unknown[] }) | undefined;
  if (cause instanceof OutboundError) return cause;
  if (cause instanceof AggregateError && cause.errors.every((x) => x instanceof OutboundError)) return cause.errors[0];
  const code = cause?.code ?? (cause instanceof AggregateError ? (cause.errors[0] as { code?: string } | undefined)?.code : undefined) ?? '';
  if (/TIMEOUT|ETIMEDOUT/.test(code)) return new OutboundError('timeout', host, `${host} did not answer in time.`);
  if (/CERT|SSL|TLS|ERR_SSL/.test(code))
    return new OutboundError('tls_error', host, `could not connect to ${host} securely (its TLS certificate or handshake was refused).`);
  const why =
    code === 'ECONNREFUSED'
      ? 'connection refused'
      : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
        ? 'no such host'
        : code === 'ECONNRESET' || code === 'UND_ERR_SOCKET'
          ? 'the connection was closed'
          : 'network error';
  return new OutboundError('unreachable', host, `could not connect to ${host} (${why}).`);
}

/**
 * Text for an app or a log that an app reads: every IP literal in it that is not public unicast
 * replaced by "[internal address]" (system error text names the address it dialled).
 */
export function scrubAddresses(text: string): string {
  return text.replace(/\[?(?:[0-9a-f]{0,4}:){2,7}[0-9a-f.:]*\]?|\b\d{1,3}(?:\.\d{1,3}){3}\b/gi, (m) => {
    const bare = m.replace(/^\[|\]$/g, '');
    return net.isIP(bare) && !isPublicAddress(bare) ? '[internal address]' : m;
  });
}
