/**
 * A third-party SMART app on another origin, in a real browser (Debian's Chromium, headless, driven
 * by playwright-core): a page served from another port loads fhirclient (SMART Health IT's JS
 * client) and calls `FHIR.oauth2.authorize` with this server's FHIR base as `iss`; the person signs
 * in on Tributary's page, allows, and is back at the app, whose `FHIR.oauth2.ready()` client reads
 * the Patient and an Observation search (CORS on the SMART configuration, the token endpoint and
 * the FHIR API; the consent page's form-action naming the app's origin, which Chromium checks on
 * the redirect that follows the form post). Screenshots go to test/artifacts/smart-launch/
 * (not committed). Without Chromium the test says so and skips.
 * See: https://build.fhir.org/ig/HL7/smart-app-launch/app-launch.html#launch-app-standalone-launch
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { artifactsDir, chromiumPath, launchChromium } from './chromium.ts';
import { buildTestApp } from '../helper.ts';
import { freePort } from '../pg.ts';

const executablePath = chromiumPath(t);
if (executablePath) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const fhirBase = `${base}/fhir/r4`;
  const app = await buildTestApp(t, { fhirAuth: 'required', baseUrl: base });
  await app.listen({ port, host: '127.0.0.1' });

  // The app: two pages and fhirclient's browser build, on a port of its own (another origin).
  const fhirClientJs = fs.readFileSync(path.resolve(import.meta.dirname, '..', '..', 'node_modules', 'fhirclient', 'build', 'fhir-client.js'));
  let appOrigin = '';
  const launchHtml = () => `<!doctype html><meta charset="utf-8"><title>Launch</title><script src="/fhir-client.js"></script>
<script>FHIR.oauth2.authorize(${JSON.stringify({ iss: fhirBase, clientId: 'growth-chart', scope: 'launch/patient openid fhirUser patient/*.read', redirectUri: `${appOrigin}/app.html` })});</script>`;
  const appHtml = `<!doctype html><meta charset="utf-8"><title>Growth Chart</title><script src="/fhir-client.js"></script>
<h1>Growth Chart</h1><p>Patient: <output id="patient">…</output></p><p>Observations: <output id="observations">…</output></p><p id="error"></p>
<script>
FHIR.oauth2.ready().then(async (client) => {
  const patient = await client.patient.read();
  document.getElementById('patient').textContent = patient.id + ' ' + patient.name[0].given[0] + ' ' + patient.name[0].family;
  const bundle = await client.request('Observation?patient=' + client.patient.id);
  document.getElementById('observations').textContent = bundle.total + ': ' + bundle.entry.map((e) => e.resource.code.coding[0].code).sort().join(' ');
}).catch((e) => { document.getElementById('error').textContent = 'error: ' + e.message; });
</script>`;
  const site = http.createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    if (p === '/fhir-client.js') return res.writeHead(200, { 'content-type': 'text/javascript' }).end(fhirClientJs);
    if (p === '/launch.html') return res.writeHead(200, { 'content-type': 'text/html' }).end(launchHtml());
    if (p === '/app.html') return res.writeHead(200, { 'content-type': 'text/html' }).end(appHtml);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => site.close(resolve)));
  appOrigin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;

  // A public app (PKCE, no secret) registered with the page's address, and a user who signs in with a password.
  const { app: client } = await app.auth.createApp({
    name: 'Growth Chart',
    clientId: 'growth-chart',
    public: true,
    redirectUris: [`${appOrigin}/app.html`],
  });
  const user = (await app.auth.createUser(client.id, 'amy'))!;
  await app.auth.setPassword(client.id, user.id, 'amy', 'correct horse battery');
  const ctx = { partitionId: client.id, ownerId: user.id, baseUrl: fhirBase };
  const post = async (body: { resourceType: string; [k: string]: unknown }) =>
    JSON.parse((await app.fhir.create(ctx, body.resourceType, body, {})).stored.json!);
  const patient = await post({ resourceType: 'Patient', name: [{ family: 'Shaw', given: ['Amy'] }] });
  for (const code of ['2339-0', '8302-2']) {
    await post({
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code }] },
      subject: { reference: `Patient/${patient.id}` },
    });
  }

  const artifacts = artifactsDir('smart-launch');
  const browser = await launchChromium(t, executablePath);

  t.test('fhirclient on another origin: authorize → sign in → allow → ready() reads the Patient and Observations', async (t) => {
    const page = await browser.newPage({ viewport: { width: 800, height: 800 } });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(String(e)));
    // CSP and CORS refusals are console errors; a failed load is named by its response instead (the favicon aside).
    page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && problems.push(m.text()));
    page.on('response', (r) => r.status() >= 400 && !r.url().endsWith('/favicon.ico') && problems.push(`${r.status()} ${r.url()}`));
    const shot = (name: string) => page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
    try {
      await page.goto(`${appOrigin}/launch.html`);
      await page.getByRole('heading', { name: 'Sign in to share your records with Growth Chart' }).waitFor({ timeout: 10_000 });
      t.equal(new URL(page.url()).origin, base, "Tributary's sign-in page");
      await shot('1-sign-in');
      await page.getByLabel('Username').fill('amy');
      await page.getByLabel('Password').fill('correct horse battery');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('button', { name: 'Allow' }).waitFor({ timeout: 10_000 });
      t.match(await page.locator('body').textContent(), /Growth Chart asks for/);
      await shot('2-consent');
      await page.getByRole('button', { name: 'Allow' }).click();
      await page.waitForURL(`${appOrigin}/app.html**`, { timeout: 10_000 });
      t.pass('back at the app, on its own origin');
      await page
        .locator('#observations')
        .filter({ hasText: /\d/ })
        .or(page.locator('#error').filter({ hasText: /./ }))
        .waitFor({ timeout: 10_000 });
      await shot('3-app');
      t.equal(await page.locator('#error').textContent(), '', 'no error in the app');
      t.equal(await page.locator('#patient').textContent(), `${patient.id} Amy Shaw`, 'the Patient, read with the token');
      t.equal(await page.locator('#observations').textContent(), '2: 2339-0 8302-2', 'the Observation search');
    } catch (err) {
      await shot('failed').catch(() => undefined);
      t.fail(`the launch did not complete: ${String(err).split('\n')[0]} (at ${page.url()})`);
    }
    t.same(problems, [], 'no script, CORS or CSP errors in the console');
  });
}
