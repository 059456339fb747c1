/**
 * HAPI FHIR's search-index hashes and string normalization.
 *
 * The hash is MurmurHash3 x64 128-bit with seed 0 over the escaped values, each followed by `|`;
 * the result is the first 8 bytes of the digest read as a little-endian signed 64-bit integer
 * (Guava's `HashCode.asLong()`), as in HAPI's `SearchParamHash` / `BaseResourceIndexedSearchParam.hash`.
 */

// All 64-bit arithmetic below is done on pairs of unsigned 32-bit halves held in plain numbers
// (hi, lo), avoiding BigInt until the very end: a BigInt version costs several µs per hash.

// Multiplication constants split into 32-bit halves.
const C1_HI = 0x87c37b91;
const C1_LO = 0x114253d5;
const C2_HI = 0x4cf5ad43;
const C2_LO = 0x2745937f;
const F1_HI = 0xff51afd7;
const F1_LO = 0xed558ccd;
const F2_HI = 0xc4ceb9fe;
const F2_LO = 0x1a85ec53;

/** 2^-32: `(s * TWO_POW_MINUS_32) | 0` is floor(s / 2^32) for 0 <= s < 2^53, without a division. */
const TWO_POW_MINUS_32 = 1 / 4294967296;

// Result registers of mul64 and fmix64: [hi, lo]. A typed array rather than module-level `let`s,
// which would box every uint32 above 2^30 into a heap number on each write.
const R = new Uint32Array(2);

/**
 * (aHi:aLo * bHi:bLo) mod 2^64, halves as uint32; result in R.
 * The low word of aLo*bLo is Math.imul's; its high word comes from the double product: that is
 * within 2^11 of the exact product (< 2^64), so (product - low) / 2^32 is within 2^-20 of the
 * exact high word and rounding recovers it. The cross terms only matter mod 2^32: Math.imul.
 */
function mul64(aHi: number, aLo: number, bHi: number, bLo: number): void {
  const lo = Math.imul(aLo, bLo) >>> 0;
  R[1] = lo;
  R[0] = (((aLo * bLo - lo) * TWO_POW_MINUS_32 + 0.5) >>> 0) + Math.imul(aHi, bLo) + Math.imul(aLo, bHi);
}

/** fmix64 of hi:lo; result in R. */
function fmix64(hi: number, lo: number): void {
  lo = (lo ^ (hi >>> 1)) >>> 0; // k ^= k >>> 33
  mul64(hi, lo, F1_HI, F1_LO);
  hi = R[0];
  lo = (R[1] ^ (hi >>> 1)) >>> 0;
  mul64(hi, lo, F2_HI, F2_LO);
  R[1] ^= R[0] >>> 1;
}

// Reused input buffer (grown on demand); hapiHash is synchronous so sharing it is safe.
let buf = new Uint8Array(1024);

/** Replaces buf by a larger one holding at least `needed` bytes, keeping buf[0, used); returns it. */
function grow(needed: number, used: number): Uint8Array {
  let size = buf.length * 2;
  while (size < needed) size *= 2;
  const next = new Uint8Array(size);
  next.set(buf.subarray(0, used));
  buf = next;
  return next;
}

/** MurmurHash3_x64_128 (seed 0) over buf[0, len); returns h1 (first 8 bytes of the digest) as a signed 64-bit bigint. */
function murmurBuf(len: number): bigint {
  const b = buf;
  let h1Hi = 0;
  let h1Lo = 0;
  let h2Hi = 0;
  let h2Lo = 0;
  let kHi: number;
  let kLo: number;
  let mHi: number;
  let mLo: number;
  let t: number;
  let s: number;
  const tail = len & ~15;
  // Block loop: the 64-bit multiplies (as in mul64) are written out to keep everything in locals.
  for (let i = 0; i < tail; i += 16) {
    // k1 = bytes[i, i+8), k2 = bytes[i+8, i+16), little-endian.
    kLo = (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
    kHi = (b[i + 4] | (b[i + 5] << 8) | (b[i + 6] << 16) | (b[i + 7] << 24)) >>> 0;
    // k1 *= C1; k1 = rotl(k1, 31); k1 *= C2; h1 ^= k1
    mLo = Math.imul(kLo, C1_LO) >>> 0;
    mHi = ((((kLo * C1_LO - mLo) * TWO_POW_MINUS_32 + 0.5) >>> 0) + Math.imul(kHi, C1_LO) + Math.imul(kLo, C1_HI)) >>> 0;
    kHi = ((mHi << 31) | (mLo >>> 1)) >>> 0;
    kLo = ((mLo << 31) | (mHi >>> 1)) >>> 0;
    mLo = Math.imul(kLo, C2_LO) >>> 0;
    mHi = ((((kLo * C2_LO - mLo) * TWO_POW_MINUS_32 + 0.5) >>> 0) + Math.imul(kHi, C2_LO) + Math.imul(kLo, C2_HI)) >>> 0;
    h1Hi = (h1Hi ^ mHi) >>> 0;
    h1Lo = (h1Lo ^ mLo) >>> 0;
    // h1 = rotl(h1, 27); h1 += h2; h1 = h1 * 5 + 0x52dce729
    t = ((h1Hi << 27) | (h1Lo >>> 5)) >>> 0;
    h1Lo = ((h1Lo << 27) | (h1Hi >>> 5)) >>> 0;
    h1Hi = t;
    s = h1Lo + h2Lo;
    h1Lo = s >>> 0;
    h1Hi = (h1Hi + h2Hi + (s > 0xffffffff ? 1 : 0)) >>> 0;
    s = h1Lo * 5 + 0x52dce729; // < 2^36: exact
    h1Lo = s >>> 0;
    h1Hi = (Math.imul(h1Hi, 5) + ((s * TWO_POW_MINUS_32) | 0)) >>> 0;

    kLo = (b[i + 8] | (b[i + 9] << 8) | (b[i + 10] << 16) | (b[i + 11] << 24)) >>> 0;
    kHi = (b[i + 12] | (b[i + 13] << 8) | (b[i + 14] << 16) | (b[i + 15] << 24)) >>> 0;
    // k2 *= C2; k2 = rotl(k2, 33); k2 *= C1; h2 ^= k2
    mLo = Math.imul(kLo, C2_LO) >>> 0;
    mHi = ((((kLo * C2_LO - mLo) * TWO_POW_MINUS_32 + 0.5) >>> 0) + Math.imul(kHi, C2_LO) + Math.imul(kLo, C2_HI)) >>> 0;
    kHi = ((mLo << 1) | (mHi >>> 31)) >>> 0;
    kLo = ((mHi << 1) | (mLo >>> 31)) >>> 0;
    mLo = Math.imul(kLo, C1_LO) >>> 0;
    mHi = ((((kLo * C1_LO - mLo) * TWO_POW_MINUS_32 + 0.5) >>> 0) + Math.imul(kHi, C1_LO) + Math.imul(kLo, C1_HI)) >>> 0;
    h2Hi = (h2Hi ^ mHi) >>> 0;
    h2Lo = (h2Lo ^ mLo) >>> 0;
    // h2 = rotl(h2, 31); h2 += h1; h2 = h2 * 5 + 0x38495ab5
    t = ((h2Hi << 31) | (h2Lo >>> 1)) >>> 0;
    h2Lo = ((h2Lo << 31) | (h2Hi >>> 1)) >>> 0;
    h2Hi = t;
    s = h2Lo + h1Lo;
    h2Lo = s >>> 0;
    h2Hi = (h2Hi + h1Hi + (s > 0xffffffff ? 1 : 0)) >>> 0;
    s = h2Lo * 5 + 0x38495ab5;
    h2Lo = s >>> 0;
    h2Hi = (Math.imul(h2Hi, 5) + ((s * TWO_POW_MINUS_32) | 0)) >>> 0;
  }

  const rest = len & 15;
  if (rest > 8) {
    // k2 from bytes[tail+8, len), little-endian, zero-padded.
    kLo = 0;
    kHi = 0;
    for (let i = rest - 1; i >= 8; i--) {
      if (i >= 12) kHi = (kHi << 8) | b[tail + i];
      else kLo = (kLo << 8) | b[tail + i];
    }
    mul64(kHi >>> 0, kLo >>> 0, C2_HI, C2_LO);
    kHi = ((R[1] << 1) | (R[0] >>> 31)) >>> 0;
    kLo = ((R[0] << 1) | (R[1] >>> 31)) >>> 0;
    mul64(kHi, kLo, C1_HI, C1_LO);
    h2Hi = (h2Hi ^ R[0]) >>> 0;
    h2Lo = (h2Lo ^ R[1]) >>> 0;
  }
  if (rest > 0) {
    kLo = 0;
    kHi = 0;
    for (let i = (rest < 8 ? rest : 8) - 1; i >= 0; i--) {
      if (i >= 4) kHi = (kHi << 8) | b[tail + i];
      else kLo = (kLo << 8) | b[tail + i];
    }
    mul64(kHi >>> 0, kLo >>> 0, C1_HI, C1_LO);
    kHi = ((R[0] << 31) | (R[1] >>> 1)) >>> 0;
    kLo = ((R[1] << 31) | (R[0] >>> 1)) >>> 0;
    mul64(kHi, kLo, C2_HI, C2_LO);
    h1Hi = (h1Hi ^ R[0]) >>> 0;
    h1Lo = (h1Lo ^ R[1]) >>> 0;
  }

  // Finalization: h ^= len; h1 += h2; h2 += h1; fmix both; h1 += h2.
  h1Lo = (h1Lo ^ len) >>> 0; // len < 2^32
  h2Lo = (h2Lo ^ len) >>> 0;
  s = h1Lo + h2Lo;
  h1Lo = s >>> 0;
  h1Hi = (h1Hi + h2Hi + (s > 0xffffffff ? 1 : 0)) >>> 0;
  s = h2Lo + h1Lo;
  h2Lo = s >>> 0;
  h2Hi = (h2Hi + h1Hi + (s > 0xffffffff ? 1 : 0)) >>> 0;
  fmix64(h1Hi, h1Lo);
  h1Hi = R[0];
  h1Lo = R[1];
  fmix64(h2Hi, h2Lo);
  s = h1Lo + R[1];
  h1Lo = s >>> 0;
  h1Hi = (h1Hi + R[0] + (s > 0xffffffff ? 1 : 0)) >>> 0;
  return BigInt.asIntN(64, (BigInt(h1Hi) << 32n) | BigInt(h1Lo));
}

/** MurmurHash3_x64_128 (seed 0); returns h1, the first 8 bytes of the digest, unsigned. */
export function murmur3x64First64(data: Uint8Array): bigint {
  if (data.length > buf.length) grow(data.length, 0);
  buf.set(data);
  return BigInt.asUintN(64, murmurBuf(data.length));
}

// KEEP[c]: ASCII code c is written as is, else percent-encoded (as is every non-ASCII UTF-8 byte).
// Guava's UrlEscapers.urlFormParameterEscaper() keeps [A-Za-z0-9-_.*] and escapes the rest, except
// space → '+'; HAPI uses UrlUtil.escapeUrlParam, which percent-encodes space as %20, as here.
const KEEP = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.*') KEEP[c.charCodeAt(0)] = 1;
// HEX_HI[b] / HEX_LO[b]: the two hex digits (upper case) of byte b.
const HEX_HI = new Uint8Array(256);
const HEX_LO = new Uint8Array(256);
for (let b = 0; b < 256; b++) {
  HEX_HI[b] = '0123456789ABCDEF'.charCodeAt(b >> 4);
  HEX_LO[b] = '0123456789ABCDEF'.charCodeAt(b & 15);
}

/** Writes byte x as '%XX' at b[pos]; returns the new position. */
function putPercent(b: Uint8Array, pos: number, x: number): number {
  b[pos] = 37; // '%'
  b[pos + 1] = HEX_HI[x];
  b[pos + 2] = HEX_LO[x];
  return pos + 3;
}

/**
 * Writes the UTF-8 bytes of `value` from index `i` on (as TextEncoder: lone surrogates become
 * U+FFFD), each escaped unless an unreserved ASCII character, at b[pos]; returns the new position.
 * The caller guarantees room for 9 bytes per UTF-16 code unit (3 UTF-8 bytes × 3).
 */
function putEscapedUtf8(b: Uint8Array, pos: number, value: string, i: number): number {
  const n = value.length;
  for (; i < n; i++) {
    let c = value.charCodeAt(i);
    if (c < 0x80) {
      if (KEEP[c] === 1) b[pos++] = c;
      else pos = putPercent(b, pos, c);
    } else if (c < 0x800) {
      pos = putPercent(b, pos, 0xc0 | (c >> 6));
      pos = putPercent(b, pos, 0x80 | (c & 0x3f));
    } else {
      if ((c & 0xf800) === 0xd800) {
        const next = i + 1 < n ? value.charCodeAt(i + 1) : 0;
        if (c < 0xdc00 && (next & 0xfc00) === 0xdc00) {
          i++;
          c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          pos = putPercent(b, pos, 0xf0 | (c >> 18));
          pos = putPercent(b, pos, 0x80 | ((c >> 12) & 0x3f));
          pos = putPercent(b, pos, 0x80 | ((c >> 6) & 0x3f));
          pos = putPercent(b, pos, 0x80 | (c & 0x3f));
          continue;
        }
        c = 0xfffd; // lone surrogate
      }
      pos = putPercent(b, pos, 0xe0 | (c >> 12));
      pos = putPercent(b, pos, 0x80 | ((c >> 6) & 0x3f));
      pos = putPercent(b, pos, 0x80 | (c & 0x3f));
    }
  }
  return pos;
}

/** As putEscapedUtf8, with a fast path for the usual all-ASCII value. */
function putEscaped(b: Uint8Array, pos: number, value: string): number {
  const n = value.length;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c >= 0x80) return putEscapedUtf8(b, pos, value, i);
    if (KEEP[c] === 1) b[pos++] = c;
    else pos = putPercent(b, pos, c);
  }
  return pos;
}

/** hapiHash without the identity cache. */
function computeHash(values: readonly (string | null | undefined)[], partitionId?: number | null): bigint {
  let pos = 0;
  let b: Uint8Array = buf;
  if (partitionId !== undefined && partitionId !== null) {
    b[0] = partitionId & 0xff;
    b[1] = (partitionId >> 8) & 0xff;
    b[2] = (partitionId >> 16) & 0xff;
    b[3] = (partitionId >>> 24) & 0xff;
    pos = 4;
  }
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) {
      if (pos + 2 > b.length) b = grow(pos + 2, pos);
      b[pos++] = 0;
    } else {
      if (pos + v.length * 9 + 1 > b.length) b = grow(pos + v.length * 9 + 1, pos);
      pos = putEscaped(b, pos, v);
    }
    b[pos++] = 124; // '|'
  }
  return murmurBuf(pos);
}

// Memo of two-value hashes — the identity hashes (resource type, parameter name), which recur for
// every index row — as partition → first value → second value → hash. Nested maps look up the
// caller's (usually interned) strings directly; a cache keyed by a joined string was measured
// slower than hashing, even on hits. Bounded: cleared when it reaches IDENTITY_CACHE_MAX entries.
const IDENTITY_CACHE_MAX = 4096;
const NO_PARTITION = 'none';
const identityCache = new Map<number | string, Map<string, Map<string, bigint>>>();
let identityCacheSize = 0;

/**
 * HAPI's hash of a tuple of values (resource type, parameter name, ...values).
 * `partitionId`, when given, goes first as a 4-byte little-endian int.
 * Returns a signed 64-bit integer as a bigint (PostgreSQL bigint).
 */
export function hapiHash(values: readonly (string | null | undefined)[], partitionId?: number | null): bigint {
  if (values.length !== 2) return computeHash(values, partitionId);
  const a = values[0];
  const c = values[1];
  if (typeof a !== 'string' || typeof c !== 'string') return computeHash(values, partitionId);
  // The hashed partition bytes are exactly those of ToInt32(partitionId).
  const pk = partitionId === undefined || partitionId === null ? NO_PARTITION : partitionId | 0;
  let byFirst = identityCache.get(pk);
  let bySecond = byFirst?.get(a);
  let h = bySecond?.get(c);
  if (h === undefined) {
    h = computeHash(values, partitionId);
    if (identityCacheSize >= IDENTITY_CACHE_MAX) {
      identityCache.clear();
      identityCacheSize = 0;
      byFirst = bySecond = undefined;
    }
    if (byFirst === undefined) identityCache.set(pk, (byFirst = new Map()));
    if (bySecond === undefined) byFirst.set(a, (bySecond = new Map()));
    bySecond.set(c, h);
    identityCacheSize++;
  }
  return h;
}

/** Maximum length of `sp_value_exact` / `sp_value_normalized` in hfj_spidx_string. */
export const MAX_STRING_LENGTH = 200;

/**
 * HAPI's StringUtil.normalizeStringForSearchIndexMatching: NFD, drop combining diacritical
 * marks (U+0300..U+036F), upper-case. No re-composition.
 */
export function normalizeString(value: string): string {
  return value
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .toUpperCase();
}

/** The exact and normalized column values for a string index row, cut as HAPI cuts them. */
export function stringIndexValues(value: string): { exact: string; normalized: string } {
  const exact = value.length > MAX_STRING_LENGTH ? value.slice(0, MAX_STRING_LENGTH) : value;
  let normalized = normalizeString(exact);
  if (normalized.length > MAX_STRING_LENGTH) normalized = normalized.slice(0, MAX_STRING_LENGTH);
  return { exact, normalized };
}
