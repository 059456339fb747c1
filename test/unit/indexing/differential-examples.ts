/** One half of the R4 examples through the differential check (see differential.ts). */
import t from 'tap';
import { exampleResources } from './corpus.ts';
import { describe, differential } from './differential.ts';

export function runExamplesHalf(half: 0 | 1): void {
  t.test(`R4 examples, half ${half + 1} of 2`, async (t) => {
    const all = exampleResources();
    const result = differential(all.filter((_, i) => i % 2 === half));
    for (const line of describe(`R4 examples ${half + 1}/2`, result)) t.comment(line);
    t.ok(result.pairs > 100_000, 'compared many (resource, param) pairs');
    t.ok(result.withValues > result.pairs / 10, 'a fair share of pairs have values');
    t.same(result.mismatches, [], "compiled evaluation equals @medplum/core's");
  });
}
