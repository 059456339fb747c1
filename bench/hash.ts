/**
 * Micro-benchmark of hapiHash (src/storage/hash.ts) against the original BigInt implementation,
 * kept as the reference in the unit test.  Run: npx node bench/hash.ts
 *
 * Prints µs per hash, best of several rounds, for each workload, before (reference) and after.
 */
import { hapiHash } from '../src/storage/hash.ts';
import { referenceHapiHash } from '../test/unit/storage/hash.test.ts';

type Values = (string | null)[];
type Input = { values: Values; partitionId?: number };
type HashFn = (values: readonly (string | null | undefined)[], partitionId?: number | null) => bigint;

const types = ['Patient', 'Observation', 'Condition', 'Encounter', 'MedicationRequest'];
const params = ['identifier', 'code', 'subject', 'date', 'name', 'status', 'category', '_tag', 'value-quantity'];
const systems = ['http://loinc.org', 'http://snomed.info/sct', 'urn:oid:2.16.840.1.113883.4.1', null];
const words = ['SMITH', 'JOHN', 'MÜLLER', '杨浩', '123 MAIN STREET', 'BLOOD PRESSURE PANEL WITH ALL CHILDREN OPTIONAL', 'ANNE-MARIE'];

const ROUNDS = 20; // distinct input sets per workload, so value strings do not simply repeat
const PER_ROUND = 500;

/** One resource's worth of index hashes: an identity hash per row plus value hashes. */
function mixed(round: number): Input[] {
  const out: Input[] = [];
  for (let i = 0; i < PER_ROUND; i++) {
    const type = types[i % types.length];
    const param = params[(i * 7) % params.length];
    const kind = i % 4;
    const values: Values =
      kind === 0
        ? [type, param]
        : kind === 1
          ? [type, param, systems[i % systems.length], `${round}${10000 + ((i * 7919) % 90000)}-${i % 10}`]
          : kind === 2
            ? [type, param, words[i % words.length] + (i % 3 === 0 ? '' : ` ${round}-${i}`)]
            : [type, param, `http://example.org/fhir/${type}/${round}-${i}`];
    out.push(i % 5 === 0 ? { values, partitionId: i % 3 } : { values });
  }
  return out;
}
const identity = (_round: number): Input[] =>
  Array.from({ length: PER_ROUND }, (_, i) => ({ values: [types[i % types.length], params[(i * 7) % params.length]] }));
const token = (round: number): Input[] =>
  Array.from({ length: PER_ROUND }, (_, i) => ({ values: ['Observation', 'code', 'http://loinc.org', `${round}-${i}-5`] }));
const nonAscii = (round: number): Input[] =>
  Array.from({ length: PER_ROUND }, (_, i) => ({ values: ['Patient', 'name', `MÜLLER-杨浩 ${round} ${i} 😀`] }));

const workloads: [string, Input[][]][] = [
  ['mixed (¼ identity)', Array.from({ length: ROUNDS }, (_, r) => mixed(r))],
  ['identity (type, param)', Array.from({ length: ROUNDS }, (_, r) => identity(r))],
  ['token (type,param,sys,val)', Array.from({ length: ROUNDS }, (_, r) => token(r))],
  ['non-ASCII string', Array.from({ length: ROUNDS }, (_, r) => nonAscii(r))],
];

let sink = 0n;
/** µs per hash: best of `reps` passes over all input sets. */
function measure(fn: HashFn, sets: Input[][], reps: number): number {
  let best = Infinity;
  for (let rep = 0; rep < reps; rep++) {
    const start = process.hrtime.bigint();
    let calls = 0;
    for (const set of sets) {
      for (const x of set) sink ^= fn(x.values, x.partitionId);
      calls += set.length;
    }
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1000 / calls);
  }
  return best;
}

for (const [, sets] of workloads) {
  for (const set of sets) {
    for (const x of set) {
      if (hapiHash(x.values, x.partitionId) !== referenceHapiHash(x.values, x.partitionId)) {
        throw new Error(`mismatch for ${JSON.stringify(x)}`);
      }
    }
  }
}

console.log(`${'workload'.padEnd(28)} ${'before µs'.padStart(10)} ${'after µs'.padStart(10)} ${'speed-up'.padStart(9)}`);
for (const [name, sets] of workloads) {
  measure(referenceHapiHash, sets, 1); // warm-up
  measure(hapiHash, sets, 3);
  const before = measure(referenceHapiHash, sets, 3);
  const after = measure(hapiHash, sets, 30);
  console.log(`${name.padEnd(28)} ${before.toFixed(3).padStart(10)} ${after.toFixed(3).padStart(10)} ${(before / after).toFixed(1).padStart(8)}x`);
}
if (sink === 42n) console.log(''); // keep results observable
