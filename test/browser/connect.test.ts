/**
 * The /connect picker in a real browser: Debian's Chromium, headless, driven by playwright-core.
 * A person types part of a name, sees the matching systems, chooses one with the keyboard and
 * lands on that system's connect URL. Takes a screenshot. Without Chromium on the machine the
 * test says so and skips (.ci/run installs it).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { chromiumPath, launchChromium } from './chromium.ts';
import { buildTestApp } from '../helper.ts';
import { freePort } from '../pg.ts';
import { importDirectory } from '../../src/directory/importer.ts';

const executablePath = chromiumPath(t);
if (executablePath) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const app = await buildTestApp(t, { fhirAuth: 'required', baseUrl: base });
  await app.listen({ port, host: '127.0.0.1' });
  await importDirectory(app.pg, [
    {
      name: 'picker.csv',
      vendor: 'Tributary Test',
      content:
        'url,name,zip\nhttps://fhir.saint-elisabeth.example/R4,Hôpital Saint-Élisabeth,55401\nhttps://fhir.elm.example/R4,Elm Street Clinic,55402\n',
    },
  ]);
  const { app: client } = await app.auth.createApp({ name: 'Growth Chart' });
  const user = (await app.auth.createUser(client.id, 'browser-person'))!;
  const { access_token } = await app.auth.exchangeCode(client, await app.auth.newCode(client.id, user.id));
  const systemId = (await app.pg.query("SELECT id FROM trb_system WHERE name = 'Hôpital Saint-Élisabeth'")).rows[0].id as string;

  const browser = await launchChromium(t, executablePath);

  t.test('type a name, see the systems, choose one, land on its connect URL', async (t) => {
    const page = await browser.newPage({ viewport: { width: 390, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const res = await page.goto(`${base}/connect?client_id=${client.clientId}&access_token=${access_token}`);
    t.equal(res?.status(), 200);
    t.equal(await page.getByLabel('Hospital, clinic or city').count(), 1, 'the search box has a label');
    await page.getByLabel('Hospital, clinic or city').fill('saint elis');
    const result = page.getByRole('link', { name: /Hôpital Saint-Élisabeth/ });
    await result.waitFor({ timeout: 10_000 });
    t.match(await page.locator('#count').textContent(), /1 found/);
    t.match(await result.textContent(), /Tributary Test/, 'the vendor is shown');
    const shot = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'trb-picker-')), 'connect.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.same([...fs.readFileSync(shot).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], `a PNG screenshot: ${shot}`);
    // The keyboard: Tab from the search box to the first result, Enter to choose it.
    await page.getByLabel('Hospital, clinic or city').focus();
    await page.keyboard.press('Tab');
    await Promise.all([page.waitForURL(`**/connect/system/clinical/${systemId}?**`), page.keyboard.press('Enter')]);
    const landed = new URL(page.url());
    t.equal(landed.pathname, `/connect/system/clinical/${systemId}`);
    t.equal(landed.searchParams.get('client_id'), client.clientId);
    t.equal(landed.searchParams.get('access_token'), access_token);
    t.same(errors, [], 'no script errors');
  });

  t.test('a link with a wrong token shows an error page', async (t) => {
    const page = await browser.newPage();
    const res = await page.goto(`${base}/connect?client_id=${client.clientId}&access_token=${'0'.repeat(64)}`);
    t.equal(res?.status(), 401);
    t.match(await page.textContent('body'), /not valid/);
  });
}
