/**
 * Single-valued parameters of the FHIR API (query parameters and headers) and the integer and
 * instant forms history and `$everything` take.
 * See: https://hl7.org/fhir/R4/http.html#history
 */
import { badRequest } from './errors.ts';

/** The single-valued string form of a header or query parameter; arrays and objects are refused. */
export function single(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') return value;
  throw badRequest(`${name} must be given once, as text.`);
}

export function intParam(v: string | undefined, fallback: number, min: number, max: number, name: string): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw badRequest(`${name} must be an integer of at least ${min}.`);
  return Math.min(n, max);
}

export function dateParam(v: string | undefined, name: string): Date | undefined {
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (!/^\d{4}-\d{2}-\d{2}/.test(v) || Number.isNaN(t)) throw badRequest(`${name} must be a FHIR instant such as 2024-05-01T10:00:00Z.`);
  return new Date(t);
}
