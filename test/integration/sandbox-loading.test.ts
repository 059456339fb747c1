/**
 * A sandbox system right after a start, while it still writes its test patients (their passwords
 * are set last): a person who signs in then (the README's credentials, the demo opened at once)
 * is told it is still loading, with a 503 and Retry-After, and nothing counts as a wrong password;
 * once it has loaded, the same sign-in goes through. Before, each try was a wrong password, and
 * five of them locked the username.
 */
import t from 'tap';
import { buildApp } from '../../src/app.ts';
import { generateSystem } from '../../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES } from '../../src/sandbox/systems.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';
import { Browser, location } from './connect-support.ts';

// Enough records that the load outlasts the sign-ins below by far.
const NV = { ...DEFAULT_SANDBOXES[0], patients: 4 };
const port = await freePort();
const BASE = `http://127.0.0.1:${port}`;
const app = await buildApp(
  testConfig(await testDatabase(t), { baseUrl: BASE, sandboxes: true, sandboxSystems: [NV], sandboxYears: 10, fhirAuth: 'required' }),
  { logger: false },
);
await app.listen({ port, host: '127.0.0.1' });
t.teardown(() => app.close());

const { app: demo } = await app.auth.createApp({ name: 'App', redirectUris: ['https://app.example/cb'] });
const user = (await app.auth.createUser(demo.id, 'early'))!;
const { access_token: token } = await app.auth.exchangeCode(demo, await app.auth.newCode(demo.id, user.id));
const patient = generateSystem({ seed: NV.seed, patients: NV.patients, idPrefix: NV.idPrefix, systemName: NV.title }).patients.find(
  (p) => p.personKey !== 'shared',
)!;

t.test('signing in while the sandbox loads: "still loading", not a wrong password; then it goes through', async (t) => {
  const browser = new Browser();
  const start = await browser.get(`${BASE}/connect/system/clinical/${NV.directoryId}?client_id=${demo.clientId}&access_token=${token}`);
  t.equal(start.status, 302);
  const form = await (await browser.get(location(start, BASE).toString())).text();
  const request = /name="request" value="([0-9a-f]{64})"/.exec(form)![1];
  const hosted = [...app.hostedSystems.values()].find((h) => h.title === NV.title)!;
  t.ok(hosted.loading, 'the sandbox is still loading');
  for (let i = 0; i < 7; i++) {
    const res = await browser.postForm(`${BASE}/oauth2/authorize/login`, { request, username: patient.username, password: patient.password });
    t.equal(res.status, 503, `try ${i + 1}: 503`);
    t.equal(res.headers.get('retry-after'), '5');
    t.match(await res.text(), /still loading its test patients/);
  }
  const { rows } = await app.pg.query('SELECT count(*)::int AS n FROM trb_signin_failure');
  t.equal(rows[0].n, 0, 'no failure was counted');
  await app.sandboxesLoaded;
  t.notOk(hosted.loading);
  const signedIn = await browser.postForm(`${BASE}/oauth2/authorize/login`, { request, username: patient.username, password: patient.password });
  t.equal(signedIn.status, 200, 'the same sign-in request goes through (it was not ended)');
  t.match(await signedIn.text(), /Allow/);
  const wrong = await (
    await browser.get(
      location(
        await browser.get(`${BASE}/connect/system/clinical/${NV.directoryId}?client_id=${demo.clientId}&access_token=${token}`),
        BASE,
      ).toString(),
    )
  ).text();
  const again = /name="request" value="([0-9a-f]{64})"/.exec(wrong)![1];
  const res = await browser.postForm(`${BASE}/oauth2/authorize/login`, { request: again, username: patient.username, password: 'not-it' });
  t.equal(res.status, 401, 'once loaded, a wrong password is a wrong password');
});
