/**
 * Debian's Chromium for the browser tests (driven by playwright-core): `apt-get install chromium`,
 * or CHROMIUM_PATH. `.ci/run` installs it; where it is missing, the test file says so and skips.
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import type { Test } from 'tap';

/** The Chromium executable, or undefined after saying in `t` that the browser test is skipped. */
export function chromiumPath(t: Pick<Test, 'comment' | 'pass'>): string | undefined {
  const found = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => p && fs.existsSync(p));
  if (!found) {
    t.comment('No Chromium on this machine (apt-get install chromium, or set CHROMIUM_PATH): the browser test is skipped.');
    t.pass('skipped: no Chromium');
  }
  return found;
}

/** Headless Chromium at `executablePath`, closed at the test file's teardown. */
export async function launchChromium(t: Pick<Test, 'teardown'>, executablePath: string): Promise<Browser> {
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  t.teardown(() => browser.close());
  return browser;
}

/** test/artifacts/<name>/, made when missing: where a browser test keeps its screenshots (not committed). */
export function artifactsDir(name: string): string {
  const dir = path.resolve(import.meta.dirname, '..', 'artifacts', name);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}
