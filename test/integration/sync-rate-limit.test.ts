/**
 * One rate per health system, shared by every worker process (src/sync/rate-limit.ts), over real
 * HTTP against the sandboxes: two processes (two apps on one database, each with its own limiter
 * and pool) sending requests for connections at one system keep together to the system's stated
 * limit (trb_system.rate_limit_per_minute) or SYNC_SYSTEM_RATE; a 429 without Retry-After holds
 * every process's requests to that system until the top of the next minute, and the rate is halved
 * after; a 429 with Retry-After holds them that long; the limiter's cost per request.
 */
import t from 'tap';
import { createSystemLimiter, systemKey } from '../../src/sync/rate-limit.ts';
import { DEFS, QUICK, secondProcess, sessionFor, startServer, type Sent } from '../unit/sync/session-support.ts';

const [NV, LS] = DEFS;
const server = await startServer(t);
const other = await secondProcess(t, server);

/**
 * The searches a session sent: not the SMART discovery its client made when it was built (each
 * process discovers a system once, so the second process's first session does).
 */
const searchesOf = (b: { sent: Sent[] }): Sent[] => b.sent.filter((s) => !s.url.includes('/.well-known/'));

/** The most requests sent within any `ms` window. */
function busiest(sent: Sent[], ms: number): number {
  const at = sent.map((s) => s.at).sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; j < at.length; j++) {
    while (at[j] - at[i] >= ms) i++;
    most = Math.max(most, j - i + 1);
  }
  return most;
}

/** The items of two lists in turn (a, b, a, b, ...): two processes' requests asked side by side. */
const alternate = <T>(a: T[], b: T[]): T[] =>
  a
    .flatMap((x, i) => [x, b[i]])
    .concat(b.slice(a.length))
    .filter((x) => x !== undefined);

/** Searches of a patient's records, `n` of them (types in turn), all asked at once. */
const searches = (base: string, patientId: string, n: number) => {
  const types = ['Observation', 'Condition', 'Encounter', 'Immunization', 'Procedure', 'MedicationRequest', 'AllergyIntolerance'];
  return Array.from({ length: n }, (_, i) => `${base}/${types[i % types.length]}?patient=${encodeURIComponent(patientId)}&_count=5`);
};

t.test("two processes together keep to the system's stated limit, and to SYNC_SYSTEM_RATE where it states none", async (t) => {
  // Lakeside states 600 calls a minute: the sync uses 90 % of it, one request every 111 ms.
  await server.app.pg.query('UPDATE trb_system SET rate_limit_per_minute = 600 WHERE id = $1', [LS.directoryId]);
  const a = await server.connect(t, LS, 0);
  const b = await server.connect(t, LS, 1);
  const here = createSystemLimiter(server.app.pg, { ratePerSecond: 1000 });
  const there = createSystemLimiter(other.pg, { ratePerSecond: 1000 });
  const sa = await sessionFor(server.app, a.connectionId, QUICK, here);
  const sb = await sessionFor(other, b.connectionId, QUICK, there);
  const started = Date.now();
  await Promise.all(
    alternate(
      searches(sa.base, sa.patientId, 18).map((u) => () => sa.session.getJson(u)),
      searches(sb.base, sb.patientId, 18).map((u) => () => sb.session.getJson(u)),
    ).map((f) => f()),
  );
  const took = Date.now() - started;
  const sent = [...searchesOf(sa), ...searchesOf(sb)];
  t.equal(sent.length, 36, 'every request sent once');
  t.ok(
    sa.sent.length && sb.sent.length && Math.min(...sb.sent.map((s) => s.at)) < Math.max(...sa.sent.map((s) => s.at)),
    'the two processes sent side by side',
  );
  // The limiter spaces the sends; when each is seen also depends on the event loops of a busy
  // machine, so one late by up to a slot may meet the next (the total time below bounds the rate).
  t.ok(busiest(sent, 1000) <= 11, `at most 9 a second between them (+1 at the window's edge, +1 sent late): ${busiest(sent, 1000)}`);
  t.ok(took >= 35 * 111 - 100, `36 requests at one every 111 ms take 3.9 s or more: ${took} ms`);

  // North Valley states no limit: SYNC_SYSTEM_RATE (here 20 a second) for both processes together.
  const c = await server.connect(t, NV, 0);
  const d = await server.connect(t, NV, 1);
  const sc = await sessionFor(server.app, c.connectionId, QUICK, createSystemLimiter(server.app.pg, { ratePerSecond: 20 }));
  const sd = await sessionFor(other, d.connectionId, QUICK, createSystemLimiter(other.pg, { ratePerSecond: 20 }));
  const begun = Date.now();
  await Promise.all(
    alternate(
      searches(sc.base, sc.patientId, 15).map((u) => () => sc.session.getJson(u)),
      searches(sd.base, sd.patientId, 15).map((u) => () => sd.session.getJson(u)),
    ).map((f) => f()),
  );
  const nvSent = [...searchesOf(sc), ...searchesOf(sd)];
  t.ok(busiest(nvSent, 1000) <= 21, `at most 20 (+1) a second between them: ${busiest(nvSent, 1000)}`);
  t.ok(Date.now() - begun >= 29 * 50 - 100, `30 requests at 20 a second take 1.45 s or more: ${Date.now() - begun} ms`);
});

t.test(
  'a 429 with Retry-After holds every process that long; without one, until the top of the next minute, and the rate is halved after',
  async (t) => {
    await server.app.pg.query('UPDATE trb_system SET rate_limit_per_minute = NULL WHERE id = $1', [LS.directoryId]);
    const a = await server.connect(t, LS, 0);
    const b = await server.connect(t, LS, 1);
    const key = systemKey(server.fhirBase(LS));
    await server.app.pg.query('DELETE FROM trb_system_rate WHERE system_key = $1', [key]);
    const here = createSystemLimiter(server.app.pg, { ratePerSecond: 20 });
    const there = createSystemLimiter(other.pg, { ratePerSecond: 20 });

    // With Retry-After: 2 s.
    let sa = await sessionFor(server.app, a.connectionId, QUICK, here);
    let sb = await sessionFor(other, b.connectionId, QUICK, there);
    t.equal((await server.admin(LS, 'faults', { fail: { count: 1, status: 429, retryAfter: 2 } })).status, 200);
    const first = sa.session.getJson(`${sa.base}/Condition?patient=${sa.patientId}`);
    await new Promise((r) => setTimeout(r, 150));
    const seen = sa.sent.find((s) => s.status === 429);
    t.ok(seen, 'the first request was refused with a 429');
    await Promise.all([first, ...searches(sb.base, sb.patientId, 6).map((u) => sb.session.getJson(u))]);
    const after = [...searchesOf(sa), ...searchesOf(sb)].filter((s) => s !== seen);
    t.ok(
      after.every((s) => s.at >= seen!.at + 1950),
      `no request to the system for the 2 s after the 429 (the first went ${Math.min(...after.map((s) => s.at)) - seen!.at} ms after)`,
    );
    t.equal(after.filter((s) => s.status === 429).length, 0, 'no 429 storm: the waiting requests went after the block, and were answered');

    // Without Retry-After: until the top of the next minute (eClinicalWorks), for both processes.
    await server.app.pg.query('UPDATE trb_system_rate SET slow_until = NULL WHERE system_key = $1', [key]);
    sa = await sessionFor(server.app, a.connectionId, QUICK, here);
    sb = await sessionFor(other, b.connectionId, QUICK, there);
    // Not in the minute's last 2 s, so that the block is surely seen.
    while (new Date().getSeconds() >= 57) await new Promise((r) => setTimeout(r, 200));
    await server.admin(LS, 'faults', { fail: { count: 1, status: 429 } });
    const refused = sa.session.getJson(`${sa.base}/Condition?patient=${sa.patientId}`);
    await new Promise((r) => setTimeout(r, 200));
    const hit = sa.sent.find((s) => s.status === 429)!;
    t.ok(hit, 'refused with a 429 without Retry-After');
    const topOfMinute = Math.ceil((hit.at + 1) / 60_000) * 60_000;
    t.comment(`blocked for ${topOfMinute - hit.at} ms, to the top of the minute`);
    const { rows } = await other.pg.query<{ blocked_until: Date; slow_until: Date }>(
      'SELECT blocked_until, slow_until FROM trb_system_rate WHERE system_key = $1',
      [key],
    );
    t.equal(rows[0].blocked_until.getTime(), topOfMinute, 'the other process sees the block, to the top of the minute');
    t.ok(rows[0].slow_until.getTime() >= topOfMinute + 9.9 * 60_000, 'and the halved rate for 10 minutes after');
    await Promise.all([refused, ...searches(sb.base, sb.patientId, 10).map((u) => sb.session.getJson(u))]);
    const rest = [...searchesOf(sa), ...searchesOf(sb)].filter((s) => s !== hit).sort((x, y) => x.at - y.at);
    t.equal(rest.length, 11, 'the refused request once more, and the other process’s ten');
    t.ok(rest[0].at >= topOfMinute - 5, `nothing went before the top of the minute (the first ${rest[0].at - topOfMinute} ms after it)`);
    t.equal(rest.filter((s) => s.status === 429).length, 0, 'no 429 storm');
    t.ok(busiest(rest, 1000) <= 11, `then at half the rate, 10 a second (+1): ${busiest(rest, 1000)}`);
    t.ok(rest.at(-1)!.at - rest[0].at >= 10 * 100 - 50, `11 requests at 10 a second: ${rest.at(-1)!.at - rest[0].at} ms`);
  },
);

t.test("the limiter's cost: one statement a request", async (t) => {
  const limiter = createSystemLimiter(server.app.pg, { ratePerSecond: 10_000 });
  // Warm: the system's limit read, the statement planned.
  for (let i = 0; i < 50; i++) await limiter.take('https://cost.example/fhir');
  const n = 2000;
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await limiter.take('https://cost.example/fhir');
  const perRequest = Number(process.hrtime.bigint() - started) / 1e6 / n;
  t.comment(`limiter overhead: ${perRequest.toFixed(3)} ms a request (${n} takes at 10,000 a second, in turn)`);
  // 10,000 a second spaces them 0.1 ms apart: each take's own cost is what is measured.
  t.ok(perRequest < 2, `well under the 2 ms bound: ${perRequest.toFixed(3)} ms`);
});
