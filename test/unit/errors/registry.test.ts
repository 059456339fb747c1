/**
 * The error registry and the README's "Error codes" table say the same: every code, its status
 * and its meaning, in both; and every code registered is one the server can answer with.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ApiError, ERRORS } from '../../../src/errors/registry.ts';

const root = path.join(import.meta.dirname, '../../..');

/** The rows of the README's table under "## Error codes": code, status, meaning. */
function readmeRows(): { code: string; status: number; meaning: string }[] {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Error codes\n');
  if (start < 0) return [];
  const section = readme.slice(start + 1).split(/\n## /)[0];
  return section
    .split('\n')
    .filter((l) => /^\| `[a-z_]+` \|/.test(l))
    .map((l) => {
      const [code, status, meaning] = l.split(' | ').map((c) => c.replace(/^\| |`| \|$/g, '').trim());
      return { code, status: Number(status), meaning };
    });
}

/** Every source file of the server, concatenated. */
function sources(dir: string): string {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .map((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? fs.readFileSync(path.join(dir, e.name), 'utf8') : ''))
    .join('\n');
}

t.test('the README lists every registered code with its status and meaning, and no other', async (t) => {
  const rows = readmeRows();
  t.ok(rows.length > 0, 'the README has the table');
  const registered = Object.entries(ERRORS).map(([code, d]) => ({ code, status: d.status, meaning: d.meaning }));
  t.same(rows, registered, 'the same codes, in the same order, with the same status and meaning');
});

t.test('every registered code is answered somewhere', async (t) => {
  const code = sources(path.join(root, 'src')).replace(/ERRORS = \{[\s\S]*?\n\} as const/, '') + sources(path.join(root, 'plugins'));
  for (const name of Object.keys(ERRORS)) t.ok(code.includes(`'${name}'`), `${name} is used`);
});

t.test('an ApiError takes its status from the registry, and carries its code in the body', async (t) => {
  const err = new ApiError('no_such_user', 'no such user');
  t.equal(err.status, 404);
  t.same(err.body(), { success: false, error: 'no such user', code: 'no_such_user' });
  t.same(err.body(false), { error: 'no such user', code: 'no_such_user' });
});
