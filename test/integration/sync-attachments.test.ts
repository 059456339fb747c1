/**
 * Note contents (src/sync/attachments.ts), over real HTTP against a sandbox whose notes link their
 * content as Binary (relative `Binary/<id>` and absolute urls, HTML and PDF): each attachment on the
 * system's origin is fetched once with Accept = its contentType, stored as Binary in the user's
 * records (a deterministic local id, the source's provenance), and named in the map the mapper
 * rewrites urls with; one on another origin is never requested; one refused (not the patient's) is
 * recorded and backs off a week; one that fails (500s) is recorded and tried again only when its
 * backoff has passed; one past the size limit is recorded and never fetched again; the per-run
 * budget bounds the fetches.
 */
import t from 'tap';
import type { Binary, DiagnosticReport, DocumentReference, Resource } from '@medplum/fhirtypes';
import { prepareAttachments, type AttachmentContext } from '../../src/sync/attachments.ts';
import { localId, SOURCE_TAG_SYSTEM, type Origin } from '../../src/sync/mapper.ts';
import { DEFS, QUICK, sessionFor, startServer, type Built } from '../unit/sync/session-support.ts';

const [, LS] = DEFS;
const server = await startServer(t);
const { app } = server;
const base = server.fhirBase(LS);

type Connected = Awaited<ReturnType<typeof server.connect>>;
let me: Connected;
let mine: { partitionId: number; ownerId: string; baseUrl: string };
let conn: { app_id: number; patient_id: string }[];
let origin: Origin;
let notes: Resource[];
const HTML = '<!DOCTYPE html><html><body><h1>Visit note</h1><p>Seen today.</p></body></html>';
const PDF = Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n');
const BIG = Buffer.alloc(6000, 'x');
const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64');
const put = (scope: typeof mine, r: Resource) => app.fhir.update(scope, r.resourceType, r.id!, r);
const doc = (id: string, attachments: DocumentReference['content']): DocumentReference => ({
  resourceType: 'DocumentReference',
  id,
  status: 'current',
  subject: { reference: `Patient/${conn[0].patient_id}` },
  content: attachments,
});

t.test('a patient whose notes link their contents as Binary connects', async (t) => {
  me = await server.connect(t, LS, 0);
  const someoneElse = await server.connect(t, LS, 1);
  const sandboxApp = (await app.pg.query('SELECT app_id FROM trb_sandbox WHERE name = $1', [LS.name])).rows[0].app_id as number;
  const ownerOf = async (personKey: string) => (await app.auth.findUser(sandboxApp, { appUserId: personKey }))!.id;
  mine = { partitionId: sandboxApp, ownerId: await ownerOf(me.personKey), baseUrl: base };
  const theirs = { partitionId: sandboxApp, ownerId: await ownerOf(someoneElse.personKey), baseUrl: base };
  conn = (
    await app.pg.query<{ app_id: number; patient_id: string }>('SELECT app_id, patient_id FROM trb_connection WHERE id = $1', [me.connectionId])
  ).rows;
  origin = { userId: me.userId, systemId: LS.directoryId, systemName: LS.title, base };
  const patient = { reference: `Patient/${conn[0].patient_id}` };
  // The source's records: Binary contents of the patient's, one of another patient's, and the notes that link them.
  await put(mine, { resourceType: 'Binary', id: 's2-html', contentType: 'text/html', data: b64(HTML) } as Binary);
  await put(mine, { resourceType: 'Binary', id: 's2-pdf', contentType: 'application/pdf', data: b64(PDF) } as Binary);
  await put(mine, { resourceType: 'Binary', id: 's2-big', contentType: 'text/plain', data: b64(BIG) } as Binary);
  await put(mine, { resourceType: 'Binary', id: 's2-flaky', contentType: 'text/html', data: b64('<p>flaky</p>') } as Binary);
  await put(theirs, { resourceType: 'Binary', id: 's2-theirs', contentType: 'text/html', data: b64('<p>not yours</p>') } as Binary);
  notes = [
    doc('s2-doc-1', [
      { attachment: { contentType: 'text/html', url: 'Binary/s2-html' } },
      { attachment: { contentType: 'application/pdf', url: `${base}/Binary/s2-pdf` } },
    ]),
    doc('s2-doc-2', [
      { attachment: { contentType: 'text/html', url: 'https://elsewhere.example/fhir/Binary/s2-html' } },
      { attachment: { contentType: 'text/plain', data: b64('inline') } },
    ]),
    doc('s2-doc-3', [{ attachment: { contentType: 'text/plain', url: 'Binary/s2-big' } }]),
    {
      resourceType: 'DiagnosticReport',
      id: 's2-report',
      status: 'final',
      code: { text: 'Report' },
      subject: patient,
      presentedForm: [{ contentType: 'text/html', url: 'Binary/s2-theirs' }],
    } as DiagnosticReport,
  ];
  for (const r of notes) await put(mine, r);
});

let built: Built;
const context = (left: number, b: Built = built): AttachmentContext => ({
  session: b.session,
  pool: app.pg,
  deps: app.fhir,
  scope: { partitionId: conn[0].app_id, ownerId: me.userId },
  origin,
  connectionId: me.connectionId,
  maxBytes: 5000,
  budget: { left },
});
const local = (sourceId: string) => `Binary/${localId(origin, 'Binary', sourceId)}`;
const rowsOf = async () =>
  (
    await app.pg.query<{ status: string; http_status: number | null; tries: number; next_in_s: number | null; binary_id: string | null }>(
      'SELECT status, http_status, tries, extract(epoch FROM next_try_at - now())::int AS next_in_s, binary_id FROM trb_sync_attachment WHERE connection_id = $1 ORDER BY status, http_status',
      [me.connectionId],
    )
  ).rows;
const readLocal = async (ref: string) =>
  (
    await fetch(`${server.base}/fhir/r4/${ref}`, { headers: { authorization: `Bearer ${me.token}`, accept: 'application/fhir+json' } })
  ).json() as Promise<Binary>;

t.test("the notes' linked contents are fetched once each, stored as Binary in the user's records, and mapped", async (t) => {
  built = await sessionFor(app, me.connectionId, QUICK);
  // As a sync reads them: the source's notes, through the session.
  const bundle = (await built.session.getJson(`${base}/DocumentReference?patient=${conn[0].patient_id}&_count=200`)) as {
    entry: { resource: Resource }[];
  };
  const report = (await built.session.getJson(`${base}/DiagnosticReport/s2-report`)) as Resource;
  const resources = [...bundle.entry.map((e) => e.resource).filter((r) => r.id!.startsWith('s2-')), report];
  t.equal(resources.length, 4, 'the four notes, as the source gives them');
  const before = built.sent.length;
  const ctx = context(10);
  const map = await prepareAttachments(ctx, resources);
  t.same(
    Object.fromEntries(map),
    { 'Binary/s2-html': local('s2-html'), [`${base}/Binary/s2-pdf`]: local('s2-pdf') },
    'keyed by the url as written, the local Binary of each stored one',
  );
  const asked = built.sent.slice(before);
  t.notOk(
    asked.some((s) => s.url.includes('elsewhere.example')),
    'the attachment on another origin was never requested',
  );
  t.same(
    asked.filter((s) => s.url === `${base}/Binary/s2-html`).map((s) => s.accept)[0],
    'text/html',
    "asked with Accept = the attachment's contentType",
  );
  t.equal(asked.filter((s) => s.url === `${base}/Binary/s2-pdf`)[0]?.accept, 'application/pdf');
  t.equal(ctx.budget.left, 6, 'four fetched (html, pdf, the big one, the other patient’s), from the budget');

  const html = await readLocal(local('s2-html'));
  t.equal(html.resourceType, 'Binary', 'in the user’s records');
  t.equal(Buffer.from(html.data!, 'base64').toString(), HTML, 'the same bytes');
  t.equal(html.contentType, 'text/html');
  t.match(html.meta, { source: base, tag: [{ system: SOURCE_TAG_SYSTEM, code: LS.directoryId }] }, 'with the source’s provenance');
  const pdf = await readLocal(local('s2-pdf'));
  t.same([pdf.contentType, Buffer.from(pdf.data!, 'base64').equals(PDF)], ['application/pdf', true]);

  const rows = await rowsOf();
  t.same(
    rows.map((r) => r.status).sort(),
    ['failed', 'stored', 'stored', 'too-large'],
    'each recorded: two stored, the other patient’s failed, the big one too large',
  );
  const refused = rows.find((r) => r.status === 'failed')!;
  t.ok(refused.http_status! >= 400 && refused.http_status! < 500, `the other patient's is refused (${refused.http_status})`);
  t.ok(refused.next_in_s! >= 7 * 86400 - 60, `and not tried for a week (${refused.next_in_s} s)`);
  t.equal(rows.find((r) => r.status === 'too-large')!.next_in_s, null, 'the big one is never tried again');
});

t.test('the next run fetches nothing again: stored ones are mapped, refused and too-large ones left', async (t) => {
  const b = await sessionFor(app, me.connectionId, QUICK);
  const ctx = context(10, b);
  const map = await prepareAttachments(ctx, notes);
  t.same(map.size, 2, 'the stored ones mapped');
  t.equal(b.sent.length, 0, 'no request at all');
  t.equal(ctx.budget.left, 10, 'no budget spent');
});

t.test('a failed fetch is retried after its backoff only; the budget bounds a run', async (t) => {
  const flaky = doc('s2-doc-4', [{ attachment: { contentType: 'text/html', url: 'Binary/s2-flaky' } }]);
  // Every try of the session fails: 500s past its attempts.
  await server.admin(LS, 'faults', { fail: { count: QUICK.attempts, status: 500 } });
  const b = await sessionFor(app, me.connectionId, QUICK);
  t.equal((await prepareAttachments(context(10, b), [flaky])).size, 0, 'not stored');
  const failed = (await rowsOf()).find((r) => r.status === 'failed' && r.http_status === 500)!;
  t.ok(failed, 'recorded as failed, with its status');
  t.ok(failed.next_in_s! > 14 * 60 && failed.next_in_s! <= 15 * 60, `tried again in 15 minutes (${failed.next_in_s} s)`);
  const again = await sessionFor(app, me.connectionId, QUICK);
  t.equal((await prepareAttachments(context(10, again), [flaky])).size, 0);
  t.equal(again.sent.length, 0, 'not tried again before then');

  // Its backoff has passed: tried again, stored.
  await app.pg.query("UPDATE trb_sync_attachment SET next_try_at = now() - interval '1 second' WHERE connection_id = $1 AND http_status = 500", [
    me.connectionId,
  ]);
  const later = await sessionFor(app, me.connectionId, QUICK);
  const map = await prepareAttachments(context(10, later), [flaky]);
  t.equal(map.get('Binary/s2-flaky'), local('s2-flaky'), 'stored once its time came');
  t.equal((await rowsOf()).find((r) => r.binary_id === localId(origin, 'Binary', 's2-flaky'))!.tries, 2, 'on its second try');

  // A budget of one: one of two new ones fetched.
  await put(mine, { resourceType: 'Binary', id: 's2-one', contentType: 'text/html', data: b64('<p>1</p>') } as Binary);
  await put(mine, { resourceType: 'Binary', id: 's2-two', contentType: 'text/html', data: b64('<p>2</p>') } as Binary);
  const two = doc('s2-doc-5', [
    { attachment: { contentType: 'text/html', url: 'Binary/s2-one' } },
    { attachment: { contentType: 'text/html', url: 'Binary/s2-two' } },
  ]);
  const s = await sessionFor(app, me.connectionId, QUICK);
  const ctx = context(1, s);
  t.equal((await prepareAttachments(ctx, [two])).size, 1, 'one fetched');
  t.equal(ctx.budget.left, 0);
  t.equal((await prepareAttachments(context(5, s), [two])).size, 2, 'the other in the next run');
});
