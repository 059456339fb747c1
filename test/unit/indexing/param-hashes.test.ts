/** The hash memo gives exactly hapiHash, whatever the values look like. */
import t from 'tap';
import { paramHashes } from '../../../src/indexing/param-hashes.ts';
import { hapiHash } from '../../../src/storage/hash.ts';

t.test('remembered hashes equal hapiHash, nulls and look-alike keys included', async (t) => {
  const h = paramHashes('Patient', 'identifier', null);
  t.equal(h.identity, hapiHash(['Patient', 'identifier']));
  const pairs: [string | null, string | null][] = [
    ['a', 'b'],
    ['a', null],
    [null, 'b'],
    [null, null],
    ['', ''],
    ['1:a', 'b'],
    ['1', ':ab'],
    ['N', 'S'],
    ['a', 'Sb'],
  ];
  for (let round = 0; round < 2; round++) {
    for (const [a, b] of pairs) t.equal(h.of2(a, b), hapiHash(['Patient', 'identifier', a, b]), `${a} ${b} round ${round}`);
    for (const v of ['x', '', null, 'N']) t.equal(h.of(v), hapiHash(['Patient', 'identifier', v]), `${v} round ${round}`);
  }
  t.equal(paramHashes('Patient', 'identifier', 7).of('x'), hapiHash(['Patient', 'identifier', 'x'], 7), 'per partition');
  t.equal(paramHashes('Patient', 'identifier', null), h, 'one memo per (type, param, partition)');
});
