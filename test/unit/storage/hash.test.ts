import { hapiHash, murmur3x64First64, normalizeString, stringIndexValues } from '../../../src/storage/hash.ts';

// ---------------------------------------------------------------------------------------------
// Reference implementation: the original, straightforward BigInt version of hapiHash. Kept here
// (not in src) as an oracle for the optimized one; bench/hash.ts imports it for comparison.
// ---------------------------------------------------------------------------------------------

const MASK64 = (1n << 64n) - 1n;
const C1 = 0x87c37b91114253d5n;
const C2 = 0x4cf5ad432745937fn;

function rotl64(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & MASK64;
}

function fmix64(k: bigint): bigint {
  k ^= k >> 33n;
  k = (k * 0xff51afd7ed558ccdn) & MASK64;
  k ^= k >> 33n;
  k = (k * 0xc4ceb9fe1a85ec53n) & MASK64;
  k ^= k >> 33n;
  return k;
}

function referenceMurmur3x64First64(data: Uint8Array): bigint {
  const len = data.length;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let h1 = 0n;
  let h2 = 0n;
  const blocks = len >> 4;
  for (let i = 0; i < blocks; i++) {
    let k1 = view.getBigUint64(i * 16, true);
    let k2 = view.getBigUint64(i * 16 + 8, true);
    k1 = (k1 * C1) & MASK64;
    k1 = rotl64(k1, 31n);
    k1 = (k1 * C2) & MASK64;
    h1 ^= k1;
    h1 = rotl64(h1, 27n);
    h1 = (h1 + h2) & MASK64;
    h1 = (h1 * 5n + 0x52dce729n) & MASK64;
    k2 = (k2 * C2) & MASK64;
    k2 = rotl64(k2, 33n);
    k2 = (k2 * C1) & MASK64;
    h2 ^= k2;
    h2 = rotl64(h2, 31n);
    h2 = (h2 + h1) & MASK64;
    h2 = (h2 * 5n + 0x38495ab5n) & MASK64;
  }
  const tail = blocks * 16;
  let k1 = 0n;
  let k2 = 0n;
  const rest = len & 15;
  for (let i = rest - 1; i >= 8; i--) k2 ^= BigInt(data[tail + i]) << BigInt((i - 8) * 8);
  if (rest > 8) {
    k2 = (k2 * C2) & MASK64;
    k2 = rotl64(k2, 33n);
    k2 = (k2 * C1) & MASK64;
    h2 ^= k2;
  }
  for (let i = Math.min(rest, 8) - 1; i >= 0; i--) k1 ^= BigInt(data[tail + i]) << BigInt(i * 8);
  if (rest > 0) {
    k1 = (k1 * C1) & MASK64;
    k1 = rotl64(k1, 31n);
    k1 = (k1 * C2) & MASK64;
    h1 ^= k1;
  }
  const blen = BigInt(len);
  h1 ^= blen;
  h2 ^= blen;
  h1 = (h1 + h2) & MASK64;
  h2 = (h2 + h1) & MASK64;
  h1 = fmix64(h1);
  h2 = fmix64(h2);
  h1 = (h1 + h2) & MASK64;
  return h1;
}

const REF_KEEP = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.*') REF_KEEP[c.charCodeAt(0)] = 1;
const REF_HEX = '0123456789ABCDEF';
const refEncoder = new TextEncoder();

/** The escaped byte string hashed for `values` (exposed so failures can show it). */
export function referenceHashInput(values: readonly (string | null | undefined)[], partitionId?: number | null): Uint8Array {
  const out: number[] = [];
  if (partitionId !== undefined && partitionId !== null) {
    out.push(partitionId & 0xff, (partitionId >> 8) & 0xff, (partitionId >> 16) & 0xff, (partitionId >>> 24) & 0xff);
  }
  for (const v of values) {
    if (v === null || v === undefined) {
      out.push(0);
    } else {
      for (const b of refEncoder.encode(v)) {
        if (b < 128 && REF_KEEP[b]) out.push(b);
        else out.push(37, REF_HEX.charCodeAt(b >> 4), REF_HEX.charCodeAt(b & 15));
      }
    }
    out.push(124);
  }
  return Uint8Array.from(out);
}

/** The original BigInt implementation of hapiHash. */
export function referenceHapiHash(values: readonly (string | null | undefined)[], partitionId?: number | null): bigint {
  return BigInt.asIntN(64, referenceMurmur3x64First64(referenceHashInput(values, partitionId)));
}

// ---------------------------------------------------------------------------------------------
// Tests (only when run as a test file, so bench/hash.ts can import the reference above).
// ---------------------------------------------------------------------------------------------

if (import.meta.main) {
  const { default: t } = await import('tap');

  // Check values from HAPI FHIR's own unit tests (SearchParamHashTest / ResourceIndexedSearchParam*Test).
  t.test('hash check values from HAPI', async (t) => {
    for (const hash of [hapiHash, referenceHapiHash]) {
      t.equal(hash(['Patient', 'NAME', 'SYSTEM']), -8558989679010582575n);
      t.equal(hash(['Patient', 'NAME', 'SYSTEM', 'VALUE']), -8644532105141886455n);
      t.equal(hash(['Patient', 'name']), -1575415002568401616n);
      t.equal(hash(['Patient', 'name'], 1), -6667609654163557704n);
    }
  });

  t.test('null and escaped values change the hash', async (t) => {
    t.not(hapiHash(['Patient', 'name', null]), hapiHash(['Patient', 'name', '']));
    t.not(hapiHash(['Patient', 'name', 'a b']), hapiHash(['Patient', 'name', 'a+b']));
    // '!' is escaped (encodeURIComponent would keep it): 'a!' and 'a~' must not collide with 'a'.
    t.not(hapiHash(['Patient', 'name', 'a!']), hapiHash(['Patient', 'name', 'a~']));
  });

  t.test('optimized hapiHash equals the BigInt reference on 10,000 random inputs', async (t) => {
    // Small deterministic PRNG (mulberry32) so failures are reproducible.
    let seed = 0x5eed1234;
    const rand = (): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
      return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
    };
    const int = (n: number): number => Math.floor(rand() * n);
    const ASCII_KEEP = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.*';
    const randomChar = (): string => {
      const r = rand();
      if (r < 0.55) return ASCII_KEEP[int(ASCII_KEEP.length)];
      if (r < 0.75) return String.fromCharCode(int(128)); // any ASCII incl. controls, space, |, %, NUL
      if (r < 0.85) return String.fromCharCode(0x80 + int(0x800 - 0x80)); // 2-byte UTF-8
      if (r < 0.93) {
        let c = 0x800 + int(0x10000 - 0x800); // 3-byte UTF-8, avoiding surrogates here
        if (c >= 0xd800 && c <= 0xdfff) c = 0x4e00 + (c & 0xff);
        return String.fromCharCode(c);
      }
      if (r < 0.98) return String.fromCodePoint(0x10000 + int(0x110000 - 0x10000)); // surrogate pair
      return String.fromCharCode(0xd800 + int(0x800)); // lone surrogate (TextEncoder → U+FFFD)
    };
    const randomString = (len: number): string => {
      let s = '';
      while (s.length < len) s += randomChar();
      return s;
    };

    const lengthsMod16 = new Set<number>();
    const N = 10_000;
    let failures = 0;
    for (let i = 0; i < N; i++) {
      // 0–5 values, each a string of random UTF-16 length 0–100, null or undefined. The first 101
      // iterations use one value of every length 0..100 so all lengths (and lengths mod 16) are hit.
      const values: (string | null | undefined)[] = [];
      if (i <= 100) {
        values.push(randomString(i));
      } else {
        const count = int(6);
        for (let j = 0; j < count; j++) {
          const r = rand();
          values.push(r < 0.08 ? null : r < 0.1 ? undefined : randomString(int(101)));
        }
      }
      const pr = rand();
      const partitionId = pr < 0.5 ? undefined : pr < 0.6 ? null : pr < 0.8 ? int(1000) : pr < 0.9 ? -1 - int(1_000_000) : int(2 ** 31);
      const input = referenceHashInput(values, partitionId);
      lengthsMod16.add(input.length % 16);
      const expected = referenceHapiHash(values, partitionId);
      if (murmur3x64First64(input) !== BigInt.asUintN(64, expected) && failures++ < 5) {
        t.fail('murmur3x64First64 mismatch', { values, partitionId });
      }
      const actual = hapiHash(values, partitionId);
      if (actual !== expected) {
        failures++;
        if (failures <= 5) t.fail('hash mismatch', { values, partitionId, expected, actual });
      }
      // Second call (cache hit, if any) must give the same result.
      if (hapiHash(values, partitionId) !== expected && failures++ < 5) t.fail('hash mismatch on repeat', { values, partitionId });
    }
    t.equal(failures, 0, `${N} random inputs match the reference`);
    t.equal(lengthsMod16.size, 16, 'every hashed byte length mod 16 was covered');
  });

  t.test('two-value (identity) hashes stay right through the bounded cache', async (t) => {
    // More distinct pairs than the cache holds, so it is cleared and refilled along the way.
    const pairs: [string, string, number | null | undefined][] = [];
    for (let i = 0; i < 6000; i++) pairs.push([`Type${i % 37}`, `param-${i}`, i % 4 === 0 ? undefined : i % 4 === 1 ? null : (i % 7) - 3]);
    pairs.push(['Patient', 'name', 1], ['Patient', 'name', 1.9], ['Patient', 'name', 2 ** 32 + 1], ['Patient', 'name', 0]);
    let failures = 0;
    for (let round = 0; round < 2; round++) {
      for (const [a, b, p] of pairs) if (hapiHash([a, b], p) !== referenceHapiHash([a, b], p)) failures++;
    }
    t.equal(failures, 0);
    t.equal(hapiHash(['Patient', 'name'], 1), -6667609654163557704n);
    t.equal(hapiHash(['Patient', 'name']), -1575415002568401616n);
    t.not(hapiHash(['Patient', 'name'], 0), hapiHash(['Patient', 'name']));
  });

  t.test('string normalization as HAPI', async (t) => {
    t.equal(normalizeString('TEST teSt'), 'TEST TEST');
    t.equal(normalizeString('åéîøü'), 'AEIØU');
    t.equal(normalizeString('杨浩'), '杨浩');
    const long = 'é'.repeat(250);
    const v = stringIndexValues(long);
    t.equal(v.exact.length, 200);
    t.equal(v.normalized, 'E'.repeat(200));
  });
}
