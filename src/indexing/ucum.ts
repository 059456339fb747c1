/**
 * UCUM quantities in canonical units, for hfj_spidx_quantity_nrml: 70 kg and 70000 g index (and
 * search) as the same 70000 g. Conversions come from @lhncbc/ucum-lhc (the National Library of
 * Medicine's UCUM library), once per unit code; units with an offset or a non-linear scale (Cel,
 * [degF], pH) have no canonical form here and are left to the plain quantity index.
 * See: https://hl7.org/fhir/R4/search.html#quantity and https://ucum.org/ucum
 */
import ucum from '@lhncbc/ucum-lhc';

export const UCUM_SYSTEM = 'http://unitsofmeasure.org';

export interface CanonicalUnit {
  /** Multiply a value in the unit by this to get it in the canonical unit. */
  factor: number;
  /** Base units with exponents, e.g. `g.m-3`; empty for a dimensionless unit. */
  unit: string;
}

let utils:
  | {
      convertToBaseUnits(
        code: string,
        value: number,
      ): { status: string; magnitude?: number; unitToExp?: Record<string, number>; fromUnitIsSpecial?: boolean };
    }
  | undefined;
const cache = new Map<string, CanonicalUnit | null>();
const MAX_CACHED = 5000;

/** The canonical form of a UCUM unit code, or null when it has none (unknown or special unit). */
export function canonicalUnit(code: string): CanonicalUnit | null {
  let c = cache.get(code);
  if (c !== undefined) return c;
  utils ??= ucum.UcumLhcUtils.getInstance();
  c = null;
  try {
    const r = utils.convertToBaseUnits(code, 1);
    if (r.status === 'succeeded' && !r.fromUnitIsSpecial && Number.isFinite(r.magnitude) && r.magnitude !== 0 && r.unitToExp) {
      const unit = Object.entries(r.unitToExp)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([u, e]) => (e === 1 ? u : `${u}${e}`))
        .join('.');
      c = { factor: r.magnitude as number, unit };
    }
  } catch {
    // not a UCUM unit: no canonical form
  }
  if (cache.size >= MAX_CACHED) cache.clear();
  cache.set(code, c);
  return c;
}

/** A decimal value times a factor, as a numeric literal with 15 significant digits at most. */
export function scaled(value: string | number, factor: number): string {
  return String(Number((Number(value) * factor).toPrecision(15)));
}
