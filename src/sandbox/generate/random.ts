/**
 * Randomness and time of the sandbox records generator (src/sandbox/generate.ts): a seeded PRNG and dates
 * counted from a fixed anchor.
 */
import { createHash } from 'node:crypto';

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** An integer in [min, max]. */
  int(min: number, max: number): number;
  real(min: number, max: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
}

/** sfc32: small, fast, and good enough for plausible data; JavaScript's own Math.random cannot be seeded. */
function sfc32(a: number, b: number, c: number, d: number): () => number {
  return () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
}

export function createRng(seed: string): Rng {
  const digest = createHash('sha256').update(seed).digest();
  const next = sfc32(digest.readUInt32LE(0), digest.readUInt32LE(4), digest.readUInt32LE(8), digest.readUInt32LE(12));
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    real: (min, max) => min + next() * (max - min),
    chance: (p) => next() < p,
    pick: (items) => items[Math.floor(next() * items.length)],
  };
}

export const MINUTE = 60_000;
export const DAY = 86_400_000;
export const YEAR = 365 * DAY;
/** Every date is relative to this instant, so that the output does not depend on when it is generated. */
export const ANCHOR = Date.UTC(2026, 0, 1);
export const ANCHOR_YEAR = 2026;

export const isoDate = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
export const isoDateTime = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
export const round = (value: number, decimals: number): number => Math.round(value * 10 ** decimals) / 10 ** decimals;
export const clamp = (value: number, min: number, max: number): number => Math.min(max, Math.max(min, value));
export const yearsBetween = (from: number, to: number): number => (to - from) / (365.25 * DAY);

/** Moves a Saturday or Sunday back to the Friday before: clinics see patients on weekdays. */
export function weekday(ms: number): number {
  const day = new Date(ms).getUTCDay();
  return day === 6 ? ms - DAY : day === 0 ? ms - 2 * DAY : ms;
}
