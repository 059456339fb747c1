/**
 * The grammar of search values: OR lists with FHIR's escapes, prefixes, token and quantity parts,
 * numbers with their implicit precision, dates as ranges.
 * See: https://hl7.org/fhir/R4/search.html#escaping, #prefix, #number, #date, #token, #quantity
 */
import { dateRange } from '../indexing/date-range.ts';
import { badRequest } from '../fhir/errors.ts';

/** Splits a value on a separator not escaped with a backslash; pieces keep their escapes. */
function splitUnescaped(value: string, sep: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '\\') i++;
    else if (value[i] === sep) {
      out.push(value.slice(start, i));
      start = i + 1;
    }
  }
  out.push(value.slice(start));
  return out;
}

/** Removes FHIR's escapes: \, \| \$ \\ (a backslash before anything else stays as written). */
export function unescape(value: string): string {
  return value.replace(/\\([,|$\\])/g, '$1');
}

/** The OR list of a parameter value, still escaped (token and composite parts split it further). */
export function splitOr(value: string): string[] {
  return splitUnescaped(value, ',');
}

/** A value split on its unescaped bars (`system|code`, `value|system|code`), each part unescaped. */
export function splitBar(value: string): string[] {
  return splitUnescaped(value, '|').map(unescape);
}

/** A composite value's components (`a$b`), each still escaped for its own type. */
export function splitDollar(value: string): string[] {
  return splitUnescaped(value, '$');
}

export const PREFIXES = ['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap'] as const;
export type Prefix = (typeof PREFIXES)[number];

/** A leading comparison prefix, when what follows it can start a number or a date. */
export function prefixOf(value: string): { prefix: Prefix; value: string } {
  const p = value.slice(0, 2) as Prefix;
  if (PREFIXES.includes(p) && /[0-9+\-.]/.test(value[2] ?? '')) return { prefix: p, value: value.slice(2) };
  return { prefix: 'eq', value };
}

const NUMBER_RE = /^[+-]?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d{1,3}))?$/;

export interface SearchNumber {
  /** The value as written (a PostgreSQL numeric literal). */
  text: string;
  /** Half the unit of the last significant digit, as a numeric literal: 100 → 0.5, 1.50 → 0.005. */
  half: string;
}

/** A number search value with its implicit precision (search.html#number), or a 400. */
export function parseNumber(raw: string, code: string): SearchNumber {
  const m = NUMBER_RE.exec(raw);
  if (!m) throw badRequest(`The value "${raw}" of parameter ${code} is not a number; write it like 100, 0.5 or 1e3.`);
  const decimals = (m[2]?.length ?? 0) - Number(m[3] ?? 0);
  return { text: raw.replace(/^\+/, ''), half: `5e${-(decimals + 1)}` };
}

/** [low, high] epoch milliseconds of a date search value at its precision, or a 400. */
export function parseDate(raw: string, code: string): { low: number; high: number } {
  const r = dateRange(raw);
  const ymd = /^(\d{4})-(\d{2})-(\d{2})/.exec(raw);
  // 2024-02-31 is no day: Date.UTC would roll it over into March. (Years 0-99 are checked as 2000-2099,
  // which have the same leap years but 2000.)
  const realDay = !ymd || new Date(Date.UTC(2000 + (Number(ymd[1]) % 400), Number(ymd[2]) - 1, Number(ymd[3]))).getUTCDate() === Number(ymd[3]);
  if (!r || Number.isNaN(r.low) || Number.isNaN(r.high) || !realDay) {
    throw badRequest(`The date "${raw}" of parameter ${code} is not a FHIR date; write it like 2024, 2024-05-01 or 2024-05-01T10:00:00Z.`);
  }
  return r;
}
