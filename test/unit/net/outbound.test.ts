/**
 * The outbound agent over real HTTP on loopback: what it refuses (after DNS, IP literals, IPv6 and
 * IPv4-mapped forms, redirects into private space), what the allow-list lets through and nothing
 * more, how it follows redirects, keeps connections alive, and words its errors.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import * as oauth from 'oauth4webapi';
import { createOutbound, isPublicAddress, OutboundError, parseAllow, privateHostReason, scrubAddresses } from '../../../src/net/outbound.ts';
import { ConfigError, loadConfig } from '../../../src/config.ts';
import { freePort } from '../../pg.ts';
import { outboundAllow } from '../../../plugins/outbound.ts';

interface Seen {
  url: string;
  method: string;
  authorization?: string;
}

/** A local server that records what reached it; `routes` answer by path. */
async function server(host: string, routes: Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => void> = {}) {
  const seen: Seen[] = [];
  let connections = 0;
  const s = http.createServer((req, res) => {
    seen.push({ url: req.url!, method: req.method!, authorization: req.headers.authorization });
    const route = routes[req.url!.split('?')[0]];
    if (route) return route(req, res);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, path: req.url }));
  });
  s.on('connection', () => connections++);
  await new Promise<void>((r) => s.listen(0, host, r));
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  const port = (s.address() as AddressInfo).port;
  return { port, seen, connections: () => connections };
}

const redirect =
  (to: string, status = 302) =>
  (_req: http.IncomingMessage, res: http.ServerResponse) =>
    res.writeHead(status, { location: to }).end();

const a = await server('127.0.0.1');
const b = await server('127.0.0.1');
const v6 = await server('::1');

const refused = async (t: Test, p: Promise<unknown>, code: string, host: string, what: string) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof OutboundError, `${what}: an OutboundError`);
  const e = err as OutboundError;
  t.equal(e.code, code, `${what}: ${code}`);
  t.match(e.message, host, `${what}: the message names the host`);
  return e;
};

t.test('nothing private without leave: a name resolving to loopback, IP literals, IPv6 and mapped forms', async (t) => {
  const o = createOutbound({ allow: [] });
  t.teardown(() => o.close());
  const before = a.seen.length;
  // localhost resolves (through /etc/hosts) to 127.0.0.1: refused after the lookup, the address unsaid.
  const e = await refused(t, o.fetch(`http://localhost:${a.port}/x`), 'blocked_address', 'localhost', 'localhost');
  t.notMatch(e.message, '127.0.0.1', 'the resolved address is not in the message');
  for (const url of [
    `http://127.0.0.1:${a.port}/`,
    `http://[::1]:${v6.port}/`,
    `http://[::ffff:127.0.0.1]:${a.port}/`,
    `http://[::127.0.0.1]:${a.port}/`,
    'http://10.1.2.3/',
    'http://169.254.169.254/latest/meta-data/',
    'http://100.64.0.1/',
    'http://0.0.0.0/',
    'http://[fe80::1]/',
    'http://[fd00::1]/',
    'http://224.0.0.1/',
    'http://0177.0.0.1/',
    'http://2130706433/',
  ]) {
    const host = new URL(url).hostname;
    const started = Date.now();
    await refused(t, o.fetch(url), 'blocked_address', host, url);
    t.ok(Date.now() - started < 1000, `${url}: refused before connecting`);
  }
  t.equal(a.seen.length, before, 'no request reached the IPv4 server');
  t.equal(v6.seen.length, 0, 'nor the IPv6 one');
  await refused(t, o.fetch('file:///etc/passwd'), 'bad_url', 'http', 'a file URL');
});

t.test('the allow-list lets a named host:port through, and nothing else', async (t) => {
  const o = createOutbound({ allow: [`127.0.0.1:${a.port}`, `[::1]:${v6.port}`] });
  t.teardown(() => o.close());
  const res = await o.fetch(`http://127.0.0.1:${a.port}/allowed`);
  t.equal(res.status, 200);
  t.same(await res.json(), { ok: true, path: '/allowed' });
  t.equal((await o.fetch(`http://[::1]:${v6.port}/six`)).status, 200, 'an IPv6 host:port entry');
  await refused(t, o.fetch(`http://127.0.0.1:${b.port}/`), 'blocked_address', '127.0.0.1', 'another port of the same host');
  await refused(t, o.fetch(`http://localhost:${a.port}/`), 'blocked_address', 'localhost', 'another name for the same address');
  t.equal(b.seen.length, 0);
  // A range allows the addresses a name resolves to.
  const ranged = createOutbound({ allow: ['127.0.0.0/8'] });
  t.teardown(() => ranged.close());
  t.equal((await ranged.fetch(`http://localhost:${b.port}/by-range`)).status, 200, 'localhost through 127.0.0.0/8');
  await refused(t, ranged.fetch(`http://[::1]:${v6.port}/`), 'blocked_address', '::1', '::1 is not in 127.0.0.0/8');
});

t.test('redirects: followed here, each hop checked, credentials kept to their origin, 303 becomes GET, at most 5', async (t) => {
  const target = await server('127.0.0.1');
  const hops = await server('127.0.0.1', {
    '/to-private': redirect(`http://localhost:${target.port}/secret`),
    '/to-metadata': redirect('http://169.254.169.254/latest/meta-data/'),
    '/to-other': redirect(`http://127.0.0.1:${target.port}/landed`, 307),
    '/same': redirect('/landed-here', 301),
    '/see-other': redirect(`http://127.0.0.1:${target.port}/got`, 303),
    '/loop': redirect('/loop'),
  });
  const o = createOutbound({ allow: [`127.0.0.1:${hops.port}`, `127.0.0.1:${target.port}`] });
  t.teardown(() => o.close());
  // A host that may be reached redirects to one that may not: refused at that hop.
  await refused(t, o.fetch(`http://127.0.0.1:${hops.port}/to-private`), 'blocked_address', 'localhost', 'a redirect to localhost');
  await refused(t, o.fetch(`http://127.0.0.1:${hops.port}/to-metadata`), 'blocked_address', '169.254.169.254', 'a redirect to the metadata address');
  t.equal(target.seen.length, 0, 'the private target saw nothing');

  const auth = { authorization: 'Bearer secret-token' };
  t.equal(
    await (await o.fetch(`http://127.0.0.1:${hops.port}/same`, { headers: auth })).json().then((j) => (j as { path: string }).path),
    '/landed-here',
  );
  t.equal(hops.seen.at(-1)!.authorization, 'Bearer secret-token', 'kept on the same origin');
  t.equal((await o.fetch(`http://127.0.0.1:${hops.port}/to-other`, { headers: auth })).status, 200);
  t.equal(target.seen.at(-1)!.url, '/landed');
  t.equal(target.seen.at(-1)!.authorization, undefined, 'dropped on another origin');

  await o.fetch(`http://127.0.0.1:${hops.port}/see-other`, {
    method: 'POST',
    body: 'x=1',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  t.same(target.seen.at(-1), { url: '/got', method: 'GET', authorization: undefined }, '303: a GET');

  const loops = hops.seen.length;
  await refused(t, o.fetch(`http://127.0.0.1:${hops.port}/loop`), 'too_many_redirects', '127.0.0.1', 'a loop');
  t.equal(hops.seen.length - loops, 6, 'the first request and 5 redirects');

  const manual = await o.fetch(`http://127.0.0.1:${hops.port}/to-private`, { redirect: 'manual' });
  t.equal(manual.status, 302, "redirect: 'manual' hands the 302 back (oauth4webapi asks so)");
  await refused(t, o.fetch(`http://127.0.0.1:${hops.port}/same`, { redirect: 'error' }), 'redirect_refused', '127.0.0.1', "redirect: 'error'");
});

t.test('keep-alive: many requests, a connection or two', async (t) => {
  const s = await server('127.0.0.1');
  const o = createOutbound({ allow: [`127.0.0.1:${s.port}`] });
  t.teardown(() => o.close());
  for (let i = 0; i < 20; i++) await (await o.fetch(`http://127.0.0.1:${s.port}/k${i}`)).arrayBuffer();
  t.equal(s.seen.length, 20);
  // (undici may open a second before the first is back in its pool; never one a request.)
  t.ok(s.connections() <= 2, `${s.connections()} connections for 20 requests`);
});

t.test('errors name the host, never the address or the system error text', async (t) => {
  const closed = await freePort();
  const o = createOutbound({ allow: ['localhost', '127.0.0.1'] });
  t.teardown(() => o.close());
  const e = await refused(t, o.fetch(`http://localhost:${closed}/`), 'unreachable', 'localhost', 'a refused connection');
  t.equal(e.message, 'could not connect to localhost (connection refused).');
  t.notMatch(e.message, /127\.0\.0\.1|::1|ECONNREFUSED/);
  const slow = await server('127.0.0.1', { '/slow': () => {} });
  const timedOut = await o.fetch(`http://127.0.0.1:${slow.port}/slow`, { signal: AbortSignal.timeout(200) }).catch((err: Error) => err);
  t.equal((timedOut as Error).name, 'TimeoutError', "a caller's timeout stays a TimeoutError");
  await refused(t, o.fetch('http://no-such-host.invalid/'), 'unreachable', 'no-such-host.invalid', 'a name that does not resolve');
  t.equal(scrubAddresses('connect ECONNREFUSED 10.1.2.3:443'), 'connect ECONNREFUSED [internal address]:443');
  t.equal(
    scrubAddresses('at [::1]:80 and fe80::1, not 8.8.8.8 or 10:30:00'),
    'at [internal address]:80 and [internal address], not 8.8.8.8 or 10:30:00',
  );
});

t.test('oauth4webapi takes its Response (customFetch)', async (t) => {
  const s = await server('127.0.0.1', {
    '/.well-known/oauth-authorization-server': (_req, res) => {
      const issuer = `http://127.0.0.1:${res.socket!.localPort}`;
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ issuer, token_endpoint: `${issuer}/token`, authorization_endpoint: `${issuer}/authorize` }));
    },
  });
  const o = createOutbound({ allow: [`127.0.0.1:${s.port}`] });
  t.teardown(() => o.close());
  const issuer = new URL(`http://127.0.0.1:${s.port}`);
  const res = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', [oauth.customFetch]: o.fetch, [oauth.allowInsecureRequests]: true });
  const as = await oauth.processDiscoveryResponse(issuer, res);
  t.equal(as.token_endpoint, `${issuer.origin}/token`);
});

t.test('addresses, allow-list entries and directory bases', async (t) => {
  for (const ok of ['8.8.8.8', '2606:4700::1111', '93.184.216.34']) t.ok(isPublicAddress(ok), ok);
  for (const bad of [
    '127.0.0.1',
    '10.0.0.1',
    '172.16.0.1',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '255.255.255.255',
    '192.0.2.1',
    '::1',
    '::',
    'fe80::1',
    'fc00::1',
    'ff02::1',
    '::ffff:10.0.0.1',
    '::a00:1',
    '64:ff9b::a00:1',
    '2001:db8::1',
    'not an address',
  ]) {
    t.notOk(isPublicAddress(bad), bad);
  }
  t.throws(() => parseAllow(['10.0.0.0/33']), /CIDR/);
  t.throws(() => parseAllow(['http://x/y']), /not a CIDR range/);
  t.throws(() => parseAllow(['a b']), /not a host/);
  t.throws(() => parseAllow(['x?y']), /not a host/);
  t.throws(
    () => loadConfig({ OUTBOUND_ALLOW: 'fhir.lan,10.0.0.0/99' }),
    /^OUTBOUND_ALLOW is a comma-separated list .*"10.0.0.0\/99" is not a CIDR range/,
  );
  t.ok(
    (() => {
      try {
        loadConfig({ OUTBOUND_ALLOW: 'a b' });
      } catch (err) {
        return err instanceof ConfigError;
      }
    })(),
    'a ConfigError',
  );
  t.same(loadConfig({ OUTBOUND_ALLOW: ' fhir.lan , 10.0.0.5:8443,10.1.0.0/16' }).outboundAllow, ['fhir.lan', '10.0.0.5:8443', '10.1.0.0/16']);
  t.same(loadConfig({}).outboundAllow, []);
  const why = (u: string, allow: string[] = []) => privateHostReason(new URL(u), allow);
  for (const bad of [
    'https://10.1.2.3/fhir',
    'http://localhost/fhir',
    'https://ehr.services.local/fhir',
    'https://fhir.corp.internal/r4',
    'http://[::1]/fhir',
    'http://[::ffff:192.168.0.1]/fhir',
    'https://127.1/fhir',
  ])
    t.ok(why(bad), bad);
  for (const ok of ['https://fhir.epic.com/api/FHIR/R4', 'https://8.8.8.8/fhir', 'https://local.example.com/fhir']) t.equal(why(ok), undefined, ok);
  t.equal(why('http://10.1.2.3:8443/fhir', ['10.1.2.3:8443']), undefined, 'allowed by host:port');
  t.ok(why('http://10.1.2.3:9443/fhir', ['10.1.2.3:8443']), 'not on another port');
  t.equal(why('http://10.1.2.3/fhir', ['10.0.0.0/8']), undefined, 'allowed by range');
  t.equal(why('http://localhost:8080/sandbox', ['localhost:8080']), undefined, 'the sandboxes on their own origin');
});

t.test("the app's allow-list: the operator's, and its own origin when it serves the sandboxes", async (t) => {
  t.same(
    outboundAllow({ outboundAllow: [], sandboxes: true, baseUrl: 'http://localhost:8080' }),
    ['localhost:8080'],
    'the defaults: the sandboxes on this origin',
  );
  t.same(outboundAllow({ outboundAllow: ['10.0.0.0/8'], sandboxes: true, baseUrl: 'https://fhir.example.org' }), [
    '10.0.0.0/8',
    'fhir.example.org:443',
  ]);
  t.same(
    outboundAllow({ outboundAllow: ['fhir.lan'], sandboxes: false, baseUrl: 'http://localhost:8080' }),
    ['fhir.lan'],
    "no sandboxes: the operator's alone",
  );
  // What it means for the sandboxes' directory rows on the default BASE_URL, and for anything else there.
  t.equal(privateHostReason(new URL('http://localhost:8080/sandbox/north-valley/fhir/r4'), ['localhost:8080']), undefined);
  const o = createOutbound({ allow: outboundAllow({ outboundAllow: [], sandboxes: true, baseUrl: `http://localhost:${a.port}` }) });
  t.teardown(() => o.close());
  t.equal((await o.fetch(`http://localhost:${a.port}/sandbox/x/fhir/r4/metadata`)).status, 200, 'its own origin is reached');
  await refused(t, o.fetch(`http://localhost:${b.port}/`), 'blocked_address', 'localhost', 'another port of it is not');
});
