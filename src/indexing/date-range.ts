/**
 * The instants a FHIR date, dateTime or instant covers.
 *
 * A date search compares ranges: `2020` stands for every instant of that year, `2020-03-01T10:00Z`
 * for a whole minute. The range runs from the first to the last millisecond of the value's
 * precision, in UTC. A value with a time zone offset is moved to UTC; a value without one (dates,
 * and dateTimes without time) is taken as UTC.
 * See: https://hl7.org/fhir/R4/search.html#date and https://hl7.org/fhir/R4/datatypes.html#dateTime
 */

export interface DateRange {
  /** First and last millisecond covered, epoch milliseconds (UTC), inclusive. */
  low: number;
  high: number;
}

const DATE_RE = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

const DAY = 86_400_000;
/** Milliseconds in 400 Gregorian years: Date.UTC maps years 0-99 to 1900-1999, so shift by a cycle. */
const CYCLE_400Y = 146_097 * DAY;

function utc(y: number, month0: number, d: number, h = 0, mi = 0, s = 0, ms = 0): number {
  return y < 100 ? Date.UTC(y + 400, month0, d, h, mi, s, ms) - CYCLE_400Y : Date.UTC(y, month0, d, h, mi, s, ms);
}

/** The range of a date, dateTime or instant string, or undefined when it is not one. */
export function dateRange(value: string): DateRange | undefined {
  const m = DATE_RE.exec(value);
  if (!m) return undefined;
  const y = +m[1];
  if (m[2] === undefined) return { low: utc(y, 0, 1), high: utc(y + 1, 0, 1) - 1 };
  const mo = +m[2];
  if (mo < 1 || mo > 12) return undefined;
  if (m[3] === undefined) return { low: utc(y, mo - 1, 1), high: utc(y, mo, 1) - 1 };
  const d = +m[3];
  if (d < 1 || d > 31) return undefined;
  if (m[4] === undefined) {
    const low = utc(y, mo - 1, d);
    return { low, high: low + DAY - 1 };
  }
  const h = +m[4];
  const mi = +m[5];
  if (h > 24 || mi > 59) return undefined;
  let low: number;
  let width: number;
  if (m[6] === undefined) {
    low = utc(y, mo - 1, d, h, mi);
    width = 60_000;
  } else if (m[7] === undefined) {
    low = utc(y, mo - 1, d, h, mi, +m[6]);
    width = 1000;
  } else {
    // `.1` covers 100 ms, `.12` 10 ms, `.123` (or finer) 1 ms.
    const frac = m[7];
    low = utc(y, mo - 1, d, h, mi, +m[6], +frac.slice(0, 3).padEnd(3, '0'));
    width = frac.length >= 3 ? 1 : 10 ** (3 - frac.length);
  }
  const zone = m[8];
  if (zone && zone !== 'Z') {
    const sign = zone[0] === '-' ? -1 : 1;
    low -= sign * (+zone.slice(1, 3) * 60 + +zone.slice(4, 6)) * 60_000;
  }
  return { low, high: low + width - 1 };
}

/** yyyymmdd of an instant in UTC, as HAPI's sp_value_low_date_ordinal / sp_value_high_date_ordinal. */
export function dateOrdinal(epochMs: number): number {
  const d = new Date(epochMs);
  return d.getUTCFullYear() * 10_000 + (d.getUTCMonth() + 1) * 100 + d.getUTCDate();
}
