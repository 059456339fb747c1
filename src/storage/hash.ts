/**
 * HAPI FHIR's search-index hashes and string normalization.
 *
 * The hash is MurmurHash3 x64 128-bit with seed 0 over the escaped values, each followed by `|`;
 * the result is the first 8 bytes of the digest read as a little-endian signed 64-bit integer
 * (Guava's `HashCode.asLong()`), as in HAPI's `SearchParamHash` / `BaseResourceIndexedSearchParam.hash`.
 */

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

/** MurmurHash3_x64_128 (seed 0); returns h1, the first 8 bytes of the digest, unsigned. */
export function murmur3x64First64(data: Uint8Array): bigint {
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

const KEEP = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.*') KEEP[c.charCodeAt(0)] = 1;
const HEX = '0123456789ABCDEF';
const encoder = new TextEncoder();

/** Guava's UrlEscapers.urlFormParameterEscaper() keeps these and escapes the rest, except space → '+'.
 *  HAPI uses UrlUtil.escapeUrlParam, which percent-encodes space as %20: the bytes below match it. */
function appendEscaped(out: number[], value: string): void {
  const bytes = encoder.encode(value);
  for (const b of bytes) {
    if (b < 128 && KEEP[b]) {
      out.push(b);
    } else {
      out.push(37, HEX.charCodeAt(b >> 4), HEX.charCodeAt(b & 15));
    }
  }
}

/**
 * HAPI's hash of a tuple of values (resource type, parameter name, ...values).
 * `partitionId`, when given, goes first as a 4-byte little-endian int.
 * Returns a signed 64-bit integer as a bigint (PostgreSQL bigint).
 */
export function hapiHash(values: readonly (string | null | undefined)[], partitionId?: number | null): bigint {
  const out: number[] = [];
  if (partitionId !== undefined && partitionId !== null) {
    out.push(partitionId & 0xff, (partitionId >> 8) & 0xff, (partitionId >> 16) & 0xff, (partitionId >>> 24) & 0xff);
  }
  for (const v of values) {
    if (v === null || v === undefined) out.push(0);
    else appendEscaped(out, v);
    out.push(124);
  }
  return BigInt.asIntN(64, murmur3x64First64(Uint8Array.from(out)));
}

/** Maximum length of `sp_value_exact` / `sp_value_normalized` in hfj_spidx_string. */
export const MAX_STRING_LENGTH = 200;

/**
 * HAPI's StringUtil.normalizeStringForSearchIndexMatching: NFD, drop combining diacritical
 * marks (U+0300..U+036F), upper-case. No re-composition.
 */
export function normalizeString(value: string): string {
  return value.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toUpperCase();
}

/** The exact and normalized column values for a string index row, cut as HAPI cuts them. */
export function stringIndexValues(value: string): { exact: string; normalized: string } {
  const exact = value.length > MAX_STRING_LENGTH ? value.slice(0, MAX_STRING_LENGTH) : value;
  let normalized = normalizeString(exact);
  if (normalized.length > MAX_STRING_LENGTH) normalized = normalized.slice(0, MAX_STRING_LENGTH);
  return { exact, normalized };
}
