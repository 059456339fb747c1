/**
 * The whole product in a real browser (Debian's Chromium, headless, driven by playwright-core):
 * the demo app creates a user through the user-management API, the person chooses a sandbox
 * system, signs in on its page with a test patient's username and password, allows the access,
 * and is back at the app, connected; the connection is listed, and the records arrive with the
 * first sync, by type and source. Screenshots of every step are
 * kept in test/artifacts/ (not committed). Without Chromium the test says so and skips.
 */
import path from 'node:path';
import t from 'tap';
import { artifactsDir, chromiumPath, launchChromium } from './chromium.ts';
import { buildApp } from '../../src/app.ts';
import { generateSystem } from '../../src/sandbox/generate.ts';
import { DEFAULT_SANDBOXES } from '../../src/sandbox/systems.ts';
import { testConfig, testDatabase } from '../helper.ts';
import { freePort } from '../pg.ts';

const executablePath = chromiumPath(t);
if (executablePath) {
  const DEFS = DEFAULT_SANDBOXES.map((d) => ({ ...d, patients: 2 }));
  const NV = DEFS[0];
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const app = await buildApp(
    testConfig(await testDatabase(t), { baseUrl: base, sandboxes: true, sandboxSystems: DEFS, fhirAuth: 'required', syncWorkers: true }),
    { logger: false },
  );
  await app.listen({ port, host: '127.0.0.1' });
  t.teardown(() => app.close());
  await app.sandboxesLoaded;
  const patient = generateSystem({ seed: NV.seed, patients: NV.patients, idPrefix: NV.idPrefix, systemName: NV.title }).patients.find(
    (p) => p.personKey !== 'shared',
  )!;
  const artifacts = artifactsDir('demo');

  const browser = await launchChromium(t, executablePath);

  t.test('demo app → connect URL → sandbox sign-in → consent → back at the app, connected', async (t) => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const shot = async (name: string) => page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });

    t.equal((await page.goto(`${base}/demo`))?.status(), 200);
    await shot('1-demo');
    await page.getByLabel("Your app's id for the user").fill('browser-demo-user');
    await page.getByRole('button', { name: 'Create user' }).click();
    await page.getByText('Signed in as').waitFor();
    t.match(await page.locator('body').textContent(), /browser-demo-user/);
    await shot('2-user-created');

    const row = page.getByRole('row', { name: new RegExp(NV.title.replace(/[()]/g, '\\$&')) });
    await row.getByRole('link', { name: 'Connect' }).click();
    await page.getByRole('heading', { name: `Sign in to ${NV.title}` }).waitFor();
    t.pass("the sandbox system's own sign-in page");
    await shot('3-sandbox-sign-in');
    await page.getByLabel('Username').fill(patient.username);
    await page.getByLabel('Password').fill(patient.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Allow' }).waitFor();
    t.match(await page.locator('body').textContent(), /Tributary asks for/);
    await shot('4-consent');
    await page.getByRole('button', { name: 'Allow' }).click();

    await page.waitForURL(`${base}/demo?**`);
    const back = new URL(page.url());
    t.same([back.searchParams.get('success'), back.searchParams.get('system_id'), back.searchParams.get('state')], ['true', NV.directoryId, 'demo']);
    t.match(await page.getByRole('status').textContent(), `Connected to ${NV.title}`);
    const connections = page.locator('table').nth(1);
    t.match(
      await connections.textContent(),
      new RegExp(`${NV.title.replace(/[()]/g, '\\$&')}\\s*(idle|syncing)`),
      'the connection is listed, with its sync state',
    );
    await shot('5-connected');
    // The first sync runs as the person connects, storing page by page: reload until its run has
    // finished (records show from its first page on).
    let records = '';
    const finished = /idle\s*succeeded at/;
    for (let i = 0; i < 100 && !(/Observation/.test(records) && finished.test((await connections.textContent()) ?? '')); i++) {
      await new Promise((r) => setTimeout(r, 300));
      await page.reload();
      records = (await page.locator('table').nth(2).textContent()) ?? '';
    }
    t.match(records, /Observation\s*North Valley Health \(sandbox\)\s*\d+/, 'the records, by type and source');
    t.match(await connections.textContent(), /idle\s*succeeded at [\d-]+ [\d:]+ UTC: \d+ new, 0 changed/, 'the last run, with its counts');
    await shot('6-records');
    t.same(errors, [], 'no script errors');
    t.comment(`screenshots: ${artifacts}`);
  });
}
