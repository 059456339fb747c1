/**
 * `GET /demo`: an app developer's first integration, served here so that `npm start` shows the
 * whole product. A built-in demo app (client_id `tributary-demo`) plays the app's back end:
 * - "Create a user" calls the user-management API with the demo app's credentials and keeps the
 *   user in a signed cookie (HttpOnly, SameSite=Lax);
 * - it lists health systems from the directory (the sandbox systems first, or a search), each with
 *   its connect URL (client_id, the user's access token, a state);
 * - back from the connect flow it says how it went, lists the user's connections, and their
 *   records by type and source as the sync brings them (FHIR search with the user's token).
 * Plain HTML forms and links, no script. Served with the sandbox systems (SANDBOXES), to this
 * machine only unless DEMO=on (DEMO=off: not at all; plugins/loopback.ts).
 * The demo app's secret is derived from the encryption key, so every process knows it.
 */
import { sendApiError } from '../src/errors/http.ts';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { addFormParser } from './auth.ts';
import { SANDBOX_VENDOR } from '../src/sandbox/directory-listing.ts';
import {
  createDemoUser,
  DEMO_CLIENT_ID,
  demoSecret,
  demoUserToken,
  ensureDemoApp,
  signedUser,
  verifiedUser,
  type DemoApi,
} from '../src/demo/demo-app.ts';
import { escapeHtml as esc } from '../src/html.ts';
import { demoLocalOnly, fromThisMachine } from './loopback.ts';

export { DEMO_CLIENT_ID } from '../src/demo/demo-app.ts';
const RECORD_TYPES = [
  'Patient',
  'Encounter',
  'Condition',
  'Observation',
  'DiagnosticReport',
  'MedicationRequest',
  'AllergyIntolerance',
  'Immunization',
  'Procedure',
  'DocumentReference',
];
const COOKIE = 'tributary_demo';

const STYLE = `body{font:16px/1.45 system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#111}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}label{display:block;font-weight:600;margin:.4rem 0}
input{padding:.5rem;font-size:1rem;width:100%;box-sizing:border-box}button,.button{display:inline-block;padding:.5rem .9rem;font-size:1rem;background:#2456b3;color:#fff;border:0;border-radius:4px;text-decoration:none;cursor:pointer}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.4rem;border-bottom:1px solid #ddd;vertical-align:top}
.note{color:#555;font-size:.9rem}.ok{background:#e7f6ea;padding:.6rem;border-left:4px solid #2a8a3e}.error{background:#fdeaea;padding:.6rem;border-left:4px solid #b3261e}
code{background:#f3f3f3;padding:0 .2rem}`;

function page(reply: FastifyReply, body: string): FastifyReply {
  return reply
    .header('Content-Type', 'text/html; charset=utf-8')
    .header('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
    .header('Cache-Control', 'no-store')
    .send(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Tributary demo app</title><style>${STYLE}</style></head><body>${body}</body></html>`,
    );
}

export default async function demoRoutes(app: FastifyInstance) {
  if (!app.config.sandboxes || app.config.demo === 'off' || !app.vault.ready) return;
  if (app.config.demo === 'loopback') {
    app.addHook('onRequest', async (req, reply) => {
      if (!fromThisMachine(req)) return page(reply.code(403), `<h1>Tributary demo app</h1><p class="error" role="alert">${esc(demoLocalOnly)}</p>`);
    });
  }
  addFormParser(app);
  const secret = demoSecret(app.vault);
  // The demo app, with the secret this key derives (kept in step on every start).
  await ensureDemoApp({ pool: app.pg, auth: app.auth }, secret, `${app.config.baseUrl}/demo`);
  const creds = { client_id: DEMO_CLIENT_ID, client_secret: secret };

  /** The demo app's own calls to the API, as its back end would make them. */
  const call: DemoApi = async (method, url, payload, headers = {}) => {
    const res = await app.inject({
      method,
      url,
      headers: { ...headers, ...(payload ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      payload: payload && new URLSearchParams(payload).toString(),
    });
    return { status: res.statusCode, body: res.json() as Record<string, unknown> & unknown[] };
  };

  /** The signed-in demo user (the cookie: app_user_id and its signature), and a fresh access token for them. */
  async function demoUser(req: FastifyRequest): Promise<{ appUserId: string; oneupUserId: number; token: string } | undefined> {
    const raw = /(?:^|;\s*)tributary_demo=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    const value = verifiedUser(app.vault, decodeURIComponent(raw ?? ''));
    return value ? demoUserToken(call, creds, value) : undefined;
  }

  app.post('/demo/user', async (req, reply) => {
    const name = String((req.body as Record<string, unknown> | undefined)?.app_user_id ?? '').trim();
    if (!/^[\x21-\x7e]{1,100}$/.test(name)) return sendApiError(reply, 'invalid_parameter', 'app_user_id: 1 to 100 visible characters.', false);
    if (!(await createDemoUser(call, creds, name)))
      return sendApiError(reply, 'demo_user_refused', 'The user-management API refused the user.', false);
    return reply
      .code(303)
      .header('Set-Cookie', `${COOKIE}=${encodeURIComponent(signedUser(app.vault, name))}; Path=/demo; HttpOnly; SameSite=Lax`)
      .header('Location', '/demo')
      .send();
  });

  app.post('/demo/sign-out', async (_req, reply) =>
    reply.code(303).header('Set-Cookie', `${COOKIE}=; Path=/demo; Max-Age=0; HttpOnly; SameSite=Lax`).header('Location', '/demo').send(),
  );

  app.get('/demo', async (req, reply) => {
    const q = req.query as Record<string, string | undefined>;
    const user = await demoUser(req);
    const intro = `<h1>Tributary demo app</h1><p class="note">An app's first integration, as a developer writes it: create a user with the user-management API, send them to a health system's connect URL, and read their records with FHIR search. The sandbox systems are simulated EHRs served by this server; their test patients are in the README.</p>`;
    if (!user) {
      return page(
        reply,
        `${intro}<h2>1. Create a user</h2><form method="post" action="/demo/user"><label for="u">Your app's id for the user</label>
<input id="u" name="app_user_id" value="demo-${Date.now().toString(36)}" required><p><button type="submit">Create user</button></p></form>`,
      );
    }
    const auth = { authorization: `Bearer ${user.token}` };
    const connections = ((await call('GET', '/connect/connections', undefined, auth)).body.entry ?? []) as {
      id: string;
      system_id: string;
      system_name: string;
      resource_url: string;
      state: string;
      created_at: string;
      last_run: { status: string; finished_at: string | null; created: number; updated: number; failed: number } | null;
    }[];
    const connectedTo = connections.find((c) => c.system_id === q.system_id)?.system_name ?? q.system_id;
    const banner =
      q.success === 'true'
        ? `<p class="ok" role="status">Connected to ${esc(connectedTo)}.</p>`
        : q.error
          ? `<p class="error" role="alert">${esc(q.error)}: ${esc(q.error_description)}</p>`
          : '';
    const search = q.q ? `&query=${encodeURIComponent(q.q.slice(0, 200))}` : `&vendor=${encodeURIComponent(SANDBOX_VENDOR)}`;
    const systems = (await call('GET', `/connect/system/clinical?client_id=${DEMO_CLIENT_ID}&client_secret=${encodeURIComponent(secret)}${search}`))
      .body as { id: string; name: string; resource_url: string; ehr: string | null }[];
    const rows = systems
      .map((s) => {
        const connect = `/connect/system/clinical/${encodeURIComponent(s.id)}?client_id=${DEMO_CLIENT_ID}&access_token=${encodeURIComponent(user.token)}&state=demo`;
        return `<tr><td>${esc(s.name)}<br><span class="note">${esc(s.ehr)} · ${esc(s.resource_url)}</span></td><td><a class="button" href="${esc(connect)}">Connect</a></td></tr>`;
      })
      .join('');
    // The user's records by type and source, as an app reads them: FHIR search with the user's token.
    const records: string[] = [];
    for (const c of connections) {
      for (const type of RECORD_TYPES) {
        const res = await call('GET', `/fhir/r4/${type}?_source=${encodeURIComponent(c.resource_url)}&_summary=count`, undefined, auth);
        const n = Number(res.body.total ?? 0);
        if (n) records.push(`<tr><td>${esc(type)}</td><td>${esc(c.system_name)}</td><td>${n}</td></tr>`);
      }
    }
    // Each connection's sync state and last run, as GET /connect/connections gives them.
    const when = (instant: string) => `${new Date(instant).toISOString().replace('T', ' ').slice(0, 19)} UTC`;
    const lastRun = (r: (typeof connections)[number]['last_run']) =>
      !r
        ? 'not yet'
        : !r.finished_at
          ? 'running'
          : `${r.status} at ${when(r.finished_at)}: ${r.created} new, ${r.updated} changed${r.failed ? `, ${r.failed} skipped` : ''}`;
    const connectionRows = connections
      .map(
        (c) =>
          `<tr><td>${esc(c.system_name)}</td><td>${esc(c.state)}</td><td>${esc(lastRun(c.last_run))}</td><td>${esc(when(c.created_at))}</td></tr>`,
      )
      .join('');
    return page(
      reply,
      `${intro}${banner}<p>Signed in as <strong>${esc(user.appUserId)}</strong> (oneup_user_id ${user.oneupUserId}).</p>
<form method="post" action="/demo/sign-out"><button type="submit">Start over</button></form>
<h2>2. Connect a health system</h2>
<form method="get" action="/demo"><label for="q">Search the directory</label><input id="q" name="q" value="${esc(q.q)}" placeholder="e.g. Mayo Clinic"></form>
<table><tbody>${rows || '<tr><td>No system matches.</td></tr>'}</tbody></table>
<h2>3. Your connections</h2>
<table><thead><tr><th>System</th><th>Sync</th><th>Last run</th><th>Connected</th></tr></thead><tbody>${connectionRows || '<tr><td colspan="4">None yet.</td></tr>'}</tbody></table>
<h2>4. Your records</h2>
<table><thead><tr><th>Type</th><th>From</th><th>Resources</th></tr></thead><tbody>${records.join('') || '<tr><td colspan="3">None yet: they arrive with the first sync, seconds after connecting (reload).</td></tr>'}</tbody></table>
<p class="note">An app reads them with FHIR search and the user's token, e.g. <code>GET /fhir/r4/Observation?code=http://loinc.org|66334-4</code> (steps), narrowed to one source with <code>_source=</code>.</p>`,
    );
  });
}
