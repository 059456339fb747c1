/**
 * The sync's tokens (src/sync/session.ts), over real HTTP against a sandbox and this server's own
 * authorization server, whose refresh tokens are single-use and rotate (as Epic's and
 * eClinicalWorks'): a valid token is not refreshed; one that has expired or is about to is refreshed
 * once, before the request, and the new tokens are stored before they are sent; access tokens
 * ended at once mid-sync (Oracle's 570 s ones run out so) cost one refresh however many requests
 * were refused; refreshes of a connection are never closer than the gap (a minute; shortened here),
 * in one run or the next; a refused refresh token is NeedsReauth, asked once.
 */
import t from 'tap';
import * as oauth from 'oauth4webapi';
import { refresh } from '../../src/connect/client.ts';
import { NeedsReauth } from '../../src/sync/session.ts';
import { DEFS, QUICK, sessionFor, startServer, type Built } from '../unit/sync/session-support.ts';

const [NV, LS] = DEFS;
const server = await startServer(t, { sandboxAccessTokenSeconds: 570 });
const tokenCalls = (b: Built) => b.sent.filter((s) => s.method === 'POST' && s.url.endsWith('/oauth2/token'));
const fhirCalls = (b: Built) => b.sent.filter((s) => s.method === 'GET');
/** The connection's refresh token as stored. */
async function storedRefreshToken(connectionId: string): Promise<string> {
  const { rows } = await server.app.pg.query<{ refresh_token_sealed: Buffer; user_id: string; system_id: string }>(
    'SELECT refresh_token_sealed, user_id, system_id FROM trb_connection WHERE id = $1',
    [connectionId],
  );
  return server.app.vault.decrypt(rows[0].refresh_token_sealed, `${rows[0].user_id}:${rows[0].system_id}`, 'connection-token');
}
const searches = (b: Built, n: number) =>
  Array.from(
    { length: n },
    (_, i) => `${b.base}/${['Condition', 'Encounter', 'Observation', 'Immunization'][i % 4]}?patient=${encodeURIComponent(b.patientId)}&_count=3`,
  );

t.test('a valid token is used as it is; one about to expire is refreshed once, stored before it is sent', async (t) => {
  const c = await server.connect(t, LS, 0);
  const { rows } = await server.app.pg.query<{ s: number }>(
    'SELECT extract(epoch FROM access_expires_at - now())::int AS s FROM trb_connection WHERE id = $1',
    [c.connectionId],
  );
  t.ok(rows[0].s > 560 && rows[0].s <= 570, `the system's token lasts 570 s (${rows[0].s} s left)`);
  const fresh = await sessionFor(server.app, c.connectionId);
  await Promise.all(searches(fresh, 4).map((u) => fresh.session.getJson(u)));
  t.same([tokenCalls(fresh).length, fresh.session.refreshes], [0, 0], 'no refresh on a run while the token is valid');

  // 5 s left: within the early margin.
  const old = await storedRefreshToken(c.connectionId);
  await server.app.pg.query("UPDATE trb_connection SET access_expires_at = now() + interval '5 seconds' WHERE id = $1", [c.connectionId]);
  const early = await sessionFor(server.app, c.connectionId);
  await Promise.all(searches(early, 6).map((u) => early.session.getJson(u)));
  t.equal(tokenCalls(early).length, 1, 'one refresh for six requests asked at once');
  t.equal(early.stored.length, 1, 'the new tokens stored once');
  const [stored] = early.stored;
  t.ok(stored.refreshToken && stored.refreshToken !== old, 'a new refresh token came (the server rotates)');
  t.equal(await storedRefreshToken(c.connectionId), stored.refreshToken, 'and it is the one stored');
  const gets = fhirCalls(early);
  t.ok(
    gets.every((g) => g.token === stored.accessToken),
    'every request went with the new access token',
  );
  t.ok(
    gets.every((g) => g.seq > stored.seq),
    'and only after the tokens were stored',
  );

  // A later run reads the stored tokens: valid, so no refresh.
  const later = await sessionFor(server.app, c.connectionId);
  await later.session.getJson(searches(later, 1)[0]);
  t.equal(tokenCalls(later).length, 0, 'the next run uses the stored, still valid token');
});

t.test('access tokens ended at once mid-sync: the refused requests wait for one refresh, then go again', async (t) => {
  const c = await server.connect(t, LS, 1);
  const b = await sessionFor(server.app, c.connectionId, { ...QUICK, concurrency: 8 });
  await Promise.all(searches(b, 4).map((u) => b.session.getJson(u)));
  const before = b.sent.length;
  // Slow answers, so that all eight are in flight when the tokens end.
  await server.admin(LS, 'faults', { slow: { count: 8, ms: 300 } });
  const running = Promise.all(searches(b, 8).map((u) => b.session.getJson(u)));
  await new Promise((r) => setTimeout(r, 100));
  t.equal((await server.admin(LS, 'expire-access-tokens')).status, 200);
  const results = await running;
  t.equal(results.length, 8, 'all eight answered');
  const after = b.sent.slice(before);
  t.ok(after.filter((s) => s.status === 401).length >= 1, `${after.filter((s) => s.status === 401).length} requests were refused with 401`);
  t.equal(tokenCalls(b).length, 1, 'one refresh for all of them (a single-use refresh token used twice would end the connection)');
  t.equal(b.stored.length, 1);
  t.ok(
    fhirCalls(b)
      .filter((s) => s.seq > b.stored[0].seq)
      .every((s) => s.token === b.stored[0].accessToken && s.status === 200),
    'after it, every request with the new token, answered',
  );
});

t.test('refreshes of a connection are never closer than the gap, in one run or the next', async (t) => {
  const gap = 1500;
  const c = await server.connect(t, NV, 0);
  const a = await sessionFor(server.app, c.connectionId, { ...QUICK, refreshGapMs: gap });
  await server.admin(NV, 'expire-access-tokens');
  await a.session.getJson(searches(a, 1)[0]);
  t.equal(tokenCalls(a).length, 1, 'a 401: refreshed');
  // Ended again at once: this 401 waits until the gap has passed since that refresh.
  await server.admin(NV, 'expire-access-tokens');
  await a.session.getJson(searches(a, 1)[0]);
  const [first, second] = tokenCalls(a);
  t.ok(second && second.at - first.at >= gap - 5, `the second refresh ${second ? second.at - first.at : '-'} ms after the first (gap ${gap} ms)`);

  // The next run (a new session, the stored tokens) knows when the last refresh was.
  const b = await sessionFor(server.app, c.connectionId, { ...QUICK, refreshGapMs: gap });
  await server.admin(NV, 'expire-access-tokens');
  await b.session.getJson(searches(b, 1)[0]);
  const [third] = tokenCalls(b);
  t.ok(third.at - second.at >= gap - 5, `the next run's refresh ${third.at - second.at} ms after the last one`);
  t.equal(b.session.refreshes, 1);
});

t.test('a refused refresh token is NeedsReauth, asked once however many requests wait for it', async (t) => {
  const c = await server.connect(t, NV, 1);
  const b = await sessionFor(server.app, c.connectionId);
  await server.admin(NV, 'expire-access-tokens');
  await server.admin(NV, 'revoke-refresh-tokens');
  const results = await Promise.allSettled(searches(b, 5).map((u) => b.session.getJson(u)));
  t.ok(
    results.every((r) => r.status === 'rejected' && r.reason instanceof NeedsReauth),
    'every request ends in NeedsReauth',
  );
  t.match((results[0] as PromiseRejectedResult).reason.message, /connect again/);
  t.equal(tokenCalls(b).length, 1, 'the refresh token was tried once');
  t.equal(b.stored.length, 0, 'nothing stored');
});

t.test('a used refresh token is refused at the server (single-use): why the session never refreshes twice with one', async (t) => {
  const c = await server.connect(t, LS, 0);
  const b = await sessionFor(server.app, c.connectionId);
  const old = await storedRefreshToken(c.connectionId);
  await server.admin(LS, 'expire-access-tokens');
  await b.session.getJson(searches(b, 1)[0]);
  t.not(b.stored[0].refreshToken, old, 'rotated');
  // The session's client, used by hand with the old token.
  const sc = (b.session as unknown as { sc: Parameters<typeof refresh>[0] }).sc;
  await t.rejects(
    refresh({ ...sc, options: { ...sc.options, [oauth.customFetch]: server.app.outbound.fetch } }, old),
    { code: 'invalid_grant' },
    'the old refresh token is refused',
  );
});
