/**
 * Debian's Chromium for the browser tests (driven by playwright-core): `apt-get install chromium`,
 * or CHROMIUM_PATH. `.ci/run` installs it; where it is missing, the test file says so and skips.
 */
import fs from 'node:fs';
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
