/**
 * Turn the values an expression yields into index rows, by search parameter type, following
 * HAPI's BaseSearchParamExtractor (hapi-fhir-jpaserver-searchparam): which datatypes each
 * parameter type accepts, which parts of a datatype become values, and what is skipped.
 * Values of a datatype a parameter type does not index are ignored, as HAPI ignores them
 * (with a warning) — e.g. the dateTime that `Condition.onset.as(Age)` yields.
 * See: https://hl7.org/fhir/R4/search.html#ptypes
 */
import type { TypedValue } from '@medplum/core';
import { dateRange, type DateRange } from './date-range.ts';
import type { IndexCollector } from './rows.ts';

const PRIMITIVES = new Set([
  'base64Binary',
  'boolean',
  'canonical',
  'code',
  'date',
  'dateTime',
  'decimal',
  'id',
  'instant',
  'integer',
  'markdown',
  'oid',
  'positiveInt',
  'string',
  'time',
  'unsignedInt',
  'uri',
  'url',
  'uuid',
]);
const QUANTITY_TYPES = new Set(['Quantity', 'Age', 'Duration', 'Distance', 'Count', 'SimpleQuantity', 'MoneyQuantity']);
const URI_TYPES = new Set(['uri', 'url', 'canonical', 'oid', 'uuid']);
const NUMBER_TYPES = new Set(['decimal', 'integer', 'positiveInt', 'unsignedInt']);
/** ISO 4217, the system HAPI gives Money amounts. */
const CURRENCY_SYSTEM = 'urn:iso:std:iso:4217';

/**
 * A number as decimal text, never in exponent form (1e-7 → "0.0000001"). JSON parsing has already
 * dropped trailing zeros, so "1.50" in the source is "1.5" here.
 */
export function numberText(n: number): string {
  const s = String(n);
  const e = s.indexOf('e');
  if (e < 0) return s;
  const sign = s[0] === '-' ? '-' : '';
  const mantissa = s.slice(sign.length, e);
  const exp = Number(s.slice(e + 1));
  const [int, frac = ''] = mantissa.split('.');
  const digits = int + frac;
  const point = int.length + exp;
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return sign + digits + '0'.repeat(point - digits.length);
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** A primitive's text, or undefined for a primitive that only carries extensions. */
function primitiveText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return numberText(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return undefined;
}

/** HAPI indexes an Extension by its value: `valueDateTime` becomes a dateTime. */
export function unwrapExtension(tv: TypedValue): TypedValue | undefined {
  if (tv.type !== 'Extension') return tv;
  const ext = tv.value as Record<string, unknown>;
  for (const key in ext) {
    if (key.length > 5 && key.startsWith('value')) {
      const suffix = key.slice(5);
      const lower = suffix[0].toLowerCase() + suffix.slice(1);
      return { type: PRIMITIVES.has(lower) ? lower : suffix, value: ext[key] };
    }
  }
  return undefined;
}

function each(values: unknown): unknown[] {
  return Array.isArray(values) ? values : values === undefined || values === null ? [] : [values];
}

/** See: https://hl7.org/fhir/R4/search.html#string */
export function addString(c: IndexCollector, name: string, tv: TypedValue): void {
  const v = tv.value;
  if (PRIMITIVES.has(tv.type)) return c.string(name, primitiveText(v));
  switch (tv.type) {
    case 'HumanName':
      // HAPI's addString_HumanName: family, given, text, prefix, suffix, one row each.
      c.string(name, v.family);
      for (const g of each(v.given)) c.string(name, g as string);
      c.string(name, v.text);
      for (const p of each(v.prefix)) c.string(name, p as string);
      for (const s of each(v.suffix)) c.string(name, s as string);
      return;
    case 'Address':
      for (const l of each(v.line)) c.string(name, l as string);
      c.string(name, v.city);
      c.string(name, v.district);
      c.string(name, v.state);
      c.string(name, v.country);
      c.string(name, v.postalCode);
      c.string(name, v.text);
      return;
    case 'ContactPoint':
      return c.string(name, v.value);
    case 'Quantity':
      if (typeof v.value === 'number') c.string(name, numberText(v.value));
      return;
    case 'Range':
      if (typeof v.low?.value === 'number') c.string(name, numberText(v.low.value));
      return;
  }
}

function addCoding(c: IndexCollector, name: string, coding: any): void {
  if (!coding || typeof coding !== 'object') return;
  c.token(name, coding.system, coding.code);
  // HAPI indexes a coding's display (and a CodeableConcept's text) as a string row of the same
  // parameter: that is what `:text` searches.
  c.string(name, coding.display);
}

/** See: https://hl7.org/fhir/R4/search.html#token */
export function addToken(c: IndexCollector, name: string, tv: TypedValue): void {
  const v = tv.value;
  if (PRIMITIVES.has(tv.type)) return c.token(name, null, primitiveText(v));
  switch (tv.type) {
    case 'Coding':
      return addCoding(c, name, v);
    case 'CodeableConcept':
      for (const coding of each(v.coding)) addCoding(c, name, coding);
      return c.string(name, v.text);
    case 'Identifier':
      if (typeof v.value === 'string' && v.value.trim()) c.token(name, v.system, v.value);
      return c.string(name, v.type?.text);
    case 'ContactPoint':
      return c.token(name, v.system, v.value);
  }
}

/** The range a date-like value covers: date/dateTime/instant, Period, Timing. */
function rangeOf(tv: TypedValue): { low: number | null; high: number | null } | undefined {
  const v = tv.value;
  switch (tv.type) {
    case 'date':
    case 'dateTime':
    case 'instant':
      return typeof v === 'string' ? dateRange(v) : undefined;
    case 'Period': {
      const start = typeof v.start === 'string' ? dateRange(v.start) : undefined;
      const end = typeof v.end === 'string' ? dateRange(v.end) : undefined;
      if (!start && !end) return undefined;
      return { low: start ? start.low : null, high: end ? end.high : null };
    }
    case 'Timing': {
      // HAPI's addDate_Timing: from the earliest to the latest of the events and repeat.boundsPeriod.
      const bounds = v.repeat?.boundsPeriod;
      const ranges: DateRange[] = [];
      for (const d of [...each(v.event), bounds?.start, bounds?.end]) {
        const r = typeof d === 'string' ? dateRange(d) : undefined;
        if (r) ranges.push(r);
      }
      if (ranges.length === 0) return undefined;
      return { low: Math.min(...ranges.map((r) => r.low)), high: Math.max(...ranges.map((r) => r.high)) };
    }
  }
  return undefined;
}

/** See: https://hl7.org/fhir/R4/search.html#date */
export function addDate(c: IndexCollector, name: string, tv: TypedValue): void {
  const r = rangeOf(tv);
  if (r) c.date(name, r.low, r.high);
}

/** See: https://hl7.org/fhir/R4/search.html#number */
export function addNumber(c: IndexCollector, name: string, tv: TypedValue): void {
  if (NUMBER_TYPES.has(tv.type) && typeof tv.value === 'number') c.number(name, numberText(tv.value));
}

function addQuantityValue(c: IndexCollector, name: string, q: any): void {
  if (!q || typeof q.value !== 'number') return;
  c.quantity(name, numberText(q.value), q.system?.trim() || null, q.code?.trim() || q.unit?.trim() || null);
}

/** See: https://hl7.org/fhir/R4/search.html#quantity */
export function addQuantity(c: IndexCollector, name: string, tv: TypedValue): void {
  const v = tv.value;
  if (QUANTITY_TYPES.has(tv.type)) return addQuantityValue(c, name, v);
  if (tv.type === 'Money') {
    if (typeof v.value === 'number') c.quantity(name, numberText(v.value), CURRENCY_SYSTEM, v.currency?.trim() || null);
  } else if (tv.type === 'Range') {
    addQuantityValue(c, name, v.low);
    addQuantityValue(c, name, v.high);
  }
}

/** See: https://hl7.org/fhir/R4/search.html#uri */
export function addUri(c: IndexCollector, name: string, tv: TypedValue): void {
  if (URI_TYPES.has(tv.type) && typeof tv.value === 'string') c.uri(name, tv.value);
}

/** `near` on Location.position: both coordinates or nothing. See: https://hl7.org/fhir/R4/location.html#positional */
export function addSpecial(c: IndexCollector, name: string, tv: TypedValue): void {
  const v = tv.value;
  if (v && typeof v.latitude === 'number' && typeof v.longitude === 'number') c.coords(name, v.latitude, v.longitude);
}
