/**
 * What a refusal carries (src/sync/session.ts SourceError), against a local HTTP server answering as
 * the vendors do: an OperationOutcome (Epic's 400, parsed), a 403 without a body, an HTML 404 (IIS),
 * a long text (cut to 2,000 characters); a 5xx is retried and carries the last answer's body; an
 * answer past getBytes' limit is TooLarge, whether its length is stated or not.
 */
import http from 'node:http';
import t from 'tap';
import * as oauth from 'oauth4webapi';
import type { SystemClient } from '../../../src/connect/client.ts';
import { createSessionShared, SourceError, SourceSession, TooLarge } from '../../../src/sync/session.ts';

const OUTCOME = {
  resourceType: 'OperationOutcome',
  issue: [
    {
      severity: 'error',
      code: 'required',
      details: { coding: [{ system: 'urn:oid:1.2.840.114350.1.13.0.1.7.2.657369', code: '59108' }] },
      diagnostics: 'Must have either code or category.',
    },
  ],
};
let hits = 0;
const server = http.createServer((req, res) => {
  hits++;
  const path = req.url!.split('?')[0];
  if (path === '/fhir/Observation') return res.writeHead(400, { 'content-type': 'application/fhir+json' }).end(JSON.stringify(OUTCOME));
  if (path === '/fhir/Coverage') return res.writeHead(403).end();
  if (path === '/fhir/Person')
    return res.writeHead(404, { 'content-type': 'text/html' }).end('<html><body><h1>404 - File or directory not found.</h1></body></html>');
  if (path === '/fhir/Long') return res.writeHead(422, { 'content-type': 'text/plain' }).end('x'.repeat(5000));
  if (path === '/fhir/Procedure')
    return res
      .writeHead(500, { 'content-type': 'application/fhir+json' })
      .end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'fatal', code: 'required' }] }));
  if (path === '/fhir/Binary/stated')
    return res.writeHead(200, { 'content-type': 'application/pdf', 'content-length': '4096' }).end(Buffer.alloc(4096));
  if (path === '/fhir/Binary/chunked') {
    res.writeHead(200, { 'content-type': 'text/html' });
    for (let i = 0; i < 8; i++) res.write(Buffer.alloc(512, 'a'));
    return res.end();
  }
  if (path === '/fhir/Binary/small') return res.writeHead(200, { 'content-type': req.headers.accept! }).end('<p>ok</p>');
  res.writeHead(404).end();
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
t.teardown(() => new Promise<void>((r) => server.close(() => r())));
const base = `http://127.0.0.1:${(server.address() as { port: number }).port}/fhir`;

const sc: SystemClient = {
  fhirBase: base,
  as: { issuer: base, token_endpoint: `${base}/token` },
  client: { client_id: 'test' },
  auth: oauth.None(),
  scope: '',
  options: { [oauth.allowInsecureRequests]: true, [oauth.customFetch]: (url, init) => fetch(url, init) },
};
const session = new SourceSession(
  sc,
  { accessToken: 'a', expiresAt: null, scope: '' },
  async () => {},
  { attempts: 3, backoffMs: 5, timeoutMs: 5000, concurrency: 4, ratePerSecond: 1000 },
  undefined,
  createSessionShared(),
);
const refusal = async (url: string) => {
  try {
    await session.getJson(url);
  } catch (err) {
    return err as SourceError;
  }
  throw new Error('not refused');
};

t.test('a refusal carries its body: an OperationOutcome parsed, text cut to 2,000 characters, none when there is none', async (t) => {
  const epic = await refusal(`${base}/Observation?patient=1`);
  t.ok(epic instanceof SourceError);
  t.same([epic.status, epic.contentType, epic.body], [400, 'application/fhir+json', OUTCOME], 'the OperationOutcome, parsed');
  t.match(epic.message, /HTTP 400 \(Must have either code or category\.\)/, 'its diagnostics in the message');
  const forbidden = await refusal(`${base}/Coverage?patient=1`);
  t.same([forbidden.status, forbidden.body], [403, undefined], 'a 403 without a body');
  const iis = await refusal(`${base}/Person?patient=1`);
  t.same([iis.status, iis.contentType], [404, 'text/html']);
  t.match(iis.body, /File or directory not found/, 'an HTML page as text');
  const long = await refusal(`${base}/Long`);
  t.equal((long.body as string).length, 2000, 'text cut to 2,000 characters');
});

t.test('a 5xx is retried, then carries the last answer’s body', async (t) => {
  const before = hits;
  const err = await refusal(`${base}/Procedure?patient=1`);
  t.equal(hits - before, 3, 'three attempts');
  t.same([err.status, (err.body as { issue: { code: string }[] }).issue[0].code], [500, 'required']);
  t.match(err.message, /3 times/);
});

t.test('getBytes: the answer with its content type, within the limit; TooLarge past it, stated or not', async (t) => {
  const ok = await session.getBytes(`${base}/Binary/small`, 'text/html', 1000);
  t.same([ok.contentType, ok.bytes.toString()], ['text/html', '<p>ok</p>'], 'asked with the given Accept');
  const stated = await session.getBytes(`${base}/Binary/stated`, 'application/pdf', 1000).catch((e: unknown) => e);
  t.ok(stated instanceof TooLarge && stated.size === 4096, 'a Content-Length past the limit, with the size stated');
  const chunked = await session.getBytes(`${base}/Binary/chunked`, 'text/html', 1000).catch((e: unknown) => e);
  t.ok(chunked instanceof TooLarge && chunked.size === undefined, 'a body that runs past it, read no further');
});
