/**
 * De-duplication measured on the labelled set (src/dedup/labelled-set.ts): precision and recall
 * per type and overall, against the bars (0.98 precision, 0.9 recall overall), and the
 * shared person's facts found across two sandbox systems.
 */
import t from 'tap';
import { findLinks, pairKey } from '../../../src/dedup/engine.ts';
import { labelledSet } from '../../../src/dedup/labelled-set.ts';

const set = labelledSet();
const links = set.people.flatMap((records) => findLinks(records));
const found = new Set(links.map((l) => pairKey(l.a, l.b)));
const typeOf = (pair: string) => pair.split('|')[0].split(':')[1].split('/')[0];

t.test('precision and recall on the labelled set', async (t) => {
  const types = new Set([...set.truth, ...found].map(typeOf));
  let tp = 0;
  for (const type of [...types].sort()) {
    const truth = [...set.truth].filter((p) => typeOf(p) === type);
    const got = [...found].filter((p) => typeOf(p) === type);
    const hit = got.filter((p) => set.truth.has(p)).length;
    tp += hit;
    const precision = got.length ? hit / got.length : 1;
    const recall = truth.length ? hit / truth.length : 1;
    t.comment(`${type}: ${truth.length} true pairs, ${got.length} linked, precision ${precision.toFixed(3)}, recall ${recall.toFixed(3)}`);
    // Each type measured on a handful of pairs or more is held to a bar of its own, a little under the overall one.
    if (truth.length >= 3)
      t.ok(precision >= 0.95 && recall >= 0.85, `${type}: precision ${precision.toFixed(3)} >= 0.95, recall ${recall.toFixed(3)} >= 0.85`);
    for (const p of got.filter((x) => !set.truth.has(x)).slice(0, 3))
      t.comment(`  false link ${p}: ${set.kinds.get(p.split('|')[1]) ?? set.kinds.get(p.split('|')[0]) ?? ''}`);
    for (const p of truth.filter((x) => !found.has(x)).slice(0, 3))
      t.comment(`  missed ${p}: ${set.kinds.get(p.split('|')[1]) ?? set.kinds.get(p.split('|')[0]) ?? ''}`);
  }
  const precision = found.size ? tp / found.size : 1;
  const recall = tp / set.truth.size;
  t.comment(`overall: ${set.truth.size} true pairs, ${found.size} linked, precision ${precision.toFixed(3)}, recall ${recall.toFixed(3)}`);
  t.ok(set.truth.size > 100, `a set worth measuring: ${set.truth.size} true pairs`);
  t.ok(precision >= 0.98, `precision ${precision.toFixed(3)} >= 0.98`);
  t.ok(recall >= 0.9, `recall ${recall.toFixed(3)} >= 0.9`);
});

t.test("the shared person's facts, recorded alike at two sandbox systems, are found", async (t) => {
  const shared = [...set.truth].filter((p) => p.startsWith('clinic:') || p.startsWith('hospital:'));
  t.equal(shared.length, 4, 'the Patient, hypertension, the penicillin allergy, the 2024 flu shot');
  for (const p of shared) t.ok(found.has(p), `linked: ${set.kinds.get(p.split('|')[0]) ?? set.kinds.get(p.split('|')[1])}`);
  const otherLinks = [...found].filter((p) => (p.startsWith('clinic:') || p.startsWith('hospital:')) && !set.truth.has(p));
  t.same(otherLinks, [], 'nothing else of the two records linked');
});
