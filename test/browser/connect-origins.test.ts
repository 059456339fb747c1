/**
 * The connect flow in a real browser (Debian's Chromium, headless, driven by playwright-core) back
 * to an app on another origin (another port): through each built-in sandbox (North Valley with
 * client_secret_basic, Lakeside a public client) and the client_secret_post and private_key_jwt
 * variants of test/integration/connect.test.ts. The person's sign-in and consent are typed in the
 * browser; the consent's form post is answered by a redirect to /connect/callback and on to the
 * app, and Chromium checks every hop against the consent page's form-action. The app is a tiny
 * server that records the query it got. One browser, a page per system; screenshots go to
 * test/artifacts/connect-origins/ (not committed). Without Chromium the test says so and skips.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { artifactsDir, chromiumPath, launchChromium } from './chromium.ts';
import { buildApp } from '../../src/app.ts';
import { generateSystem } from '../../src/sandbox/generate.ts';
import { CONNECT_SANDBOXES } from '../integration/connect-support.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';

const executablePath = chromiumPath(t);
if (executablePath) {
  // The shipped sandboxes, and the two variants that take client_secret_post and private_key_jwt (as connect.test.ts).
  const DEFS = CONNECT_SANDBOXES;
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const app = await buildApp(testConfig(await testDatabase(t), { baseUrl: base, sandboxes: true, sandboxSystems: DEFS, fhirAuth: 'required' }), {
    logger: false,
  });
  await app.listen({ port, host: '127.0.0.1' });
  t.teardown(() => app.close());
  await app.sandboxesLoaded;

  // The app: records the query its redirect URI got, and shows it.
  const heard: Record<string, string>[] = [];
  const site = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname !== '/back') return res.writeHead(404).end();
    heard.push(Object.fromEntries(u.searchParams));
    res
      .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      .end(
        `<!doctype html><title>Back at the app</title><h1>Back at the app</h1><pre id="query">${u.searchParams.toString().replace(/[<&]/g, '')}</pre>`,
      );
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => site.close(resolve)));
  const appOrigin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  const { app: client, clientSecret } = await app.auth.createApp({ name: 'Other-origin app', redirectUris: [`${appOrigin}/back`] });

  /** A user made through the user-management API, and the user's access token, as the app's back end gets them. */
  async function newUser(appUserId: string): Promise<string> {
    const creds = { client_id: client.clientId, client_secret: clientSecret };
    const form = (fields: Record<string, string>) => ({
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields),
    });
    const made = await (await fetch(`${base}/user-management/v1/user`, form({ ...creds, app_user_id: appUserId }))).json();
    const tokens = await (await fetch(`${base}/oauth2/token`, form({ ...creds, grant_type: 'authorization_code', code: made.code }))).json();
    return tokens.access_token;
  }

  const artifacts = artifactsDir('connect-origins');
  const browser = await launchChromium(t, executablePath);

  for (const d of DEFS) {
    t.test(`${d.title} (${d.auth}): sign-in and consent in the browser, back at the app on ${appOrigin}`, async (t) => {
      const token = await newUser(`person-${d.name}`);
      const p = generateSystem({ seed: d.seed, patients: d.patients, idPrefix: d.idPrefix, systemName: d.title }).patients.find(
        (x) => x.personKey !== 'shared',
      )!;
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on('pageerror', (e) => problems.push(String(e)));
      // CSP and CORS refusals are console errors; a failed load is named by its response instead (the favicon aside).
      page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && problems.push(m.text()));
      page.on('response', (r) => r.status() >= 400 && !r.url().endsWith('/favicon.ico') && problems.push(`${r.status()} ${r.url()}`));
      const shot = (name: string) => page.screenshot({ path: path.join(artifacts, `${d.name}-${name}.png`), fullPage: true });
      try {
        await page.goto(`${base}/connect/system/clinical/${d.directoryId}?client_id=${client.clientId}&access_token=${token}&state=st-${d.name}`);
        await page.getByRole('heading', { name: `Sign in to ${d.title}` }).waitFor({ timeout: 10_000 });
        await page.getByLabel('Username').fill(p.username);
        await page.getByLabel('Password').fill(p.password);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.getByRole('button', { name: 'Allow' }).waitFor({ timeout: 10_000 });
        await shot('consent');
        await page.getByRole('button', { name: 'Allow' }).click();
        await page.waitForURL(`${appOrigin}/back?**`, { timeout: 10_000 });
        await shot('back');
        t.match(await page.locator('#query').textContent(), /success=true/, 'the app shows what it heard');
      } catch (err) {
        await shot('failed').catch(() => undefined);
        t.fail(`the connect did not come back to the app: ${String(err).split('\n')[0]} (at ${page.url()})`);
      }
      t.same(
        heard.find((q) => q.state === `st-${d.name}`),
        { success: 'true', system_id: d.directoryId, state: `st-${d.name}` },
        'the app heard success and the system',
      );
      t.same(problems, [], 'no script or CSP errors in the console');
      await page.close();
    });
  }
}
