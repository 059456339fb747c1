/**
 * Collects one resource's index rows: hashes them as HAPI does, cuts values to HAPI's column
 * sizes, and drops exact duplicates (HAPI keeps its rows in sets, so a value found twice, or by
 * two union parts, is one row).
 * See: hapi-storage.md and HAPI's ResourceIndexedSearchParam* entities.
 */
import { stringIndexValues } from '../storage/hash.ts';
import { dateOrdinal } from './date-range.ts';
import { paramHashes, type ParamHashes } from './param-hashes.ts';
import { canonicalUnit, scaled, UCUM_SYSTEM } from './ucum.ts';
import type { ResourceIndexes } from './types.ts';

/** hfj_spidx_token.sp_system / sp_value are varchar(200); HAPI cuts longer values. */
export const MAX_TOKEN_LENGTH = 200;
/** hfj_spidx_uri.sp_uri is varchar(500). */
export const MAX_URI_LENGTH = 500;
/**
 * HAPI hashes only the first character of the normalized value into hash_norm_prefix
 * (ResourceIndexedSearchParamString.HASH_PREFIX_LENGTH), so that a prefix search can use it.
 */
export const HASH_PREFIX_LENGTH = 1;

const isBlank = (s: string | null | undefined): boolean => !s || s.trim().length === 0;

export class IndexCollector {
  readonly resourceType: string;
  readonly partitionId: number | null;
  readonly rows: ResourceIndexes = {
    strings: [],
    tokens: [],
    dates: [],
    numbers: [],
    quantities: [],
    quantitiesNormalized: [],
    uris: [],
    coords: [],
    links: [],
    present: [],
  };
  private readonly seen = new Set<string>();

  constructor(resourceType: string, partitionId: number | null) {
    this.resourceType = resourceType;
    this.partitionId = partitionId;
  }

  hashes(name: string): ParamHashes {
    return paramHashes(this.resourceType, name, this.partitionId);
  }

  /** False if this exact row was already added. */
  private first(key: string): boolean {
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return true;
  }

  /** HAPI's createStringIndexIfNotBlank. */
  string(name: string, value: string | null | undefined): void {
    if (isBlank(value)) return;
    const { exact, normalized } = stringIndexValues(value as string);
    if (!this.first(`s\0${name}\0${exact}`)) return;
    const h = this.hashes(name);
    this.rows.strings.push({
      name,
      missing: false,
      valueExact: exact,
      valueNormalized: normalized,
      hashIdentity: h.identity,
      hashExact: h.of(exact),
      hashNormPrefix: h.of(normalized.slice(0, HASH_PREFIX_LENGTH)),
    });
  }

  /** HAPI's createTokenIndexIfNotBlank, with system and value trimmed (blank becomes null). */
  token(name: string, system: string | null | undefined, value: string | null | undefined): void {
    let s = system?.trim() || null;
    let v = value?.trim() || null;
    if (s === null && v === null) return;
    if (s !== null && s.length > MAX_TOKEN_LENGTH) s = s.slice(0, MAX_TOKEN_LENGTH);
    if (v !== null && v.length > MAX_TOKEN_LENGTH) v = v.slice(0, MAX_TOKEN_LENGTH);
    if (!this.first(`t\0${name}\0${s ?? '\u0001'}\0${v ?? '\u0001'}`)) return;
    const h = this.hashes(name);
    this.rows.tokens.push({
      name,
      missing: false,
      system: s,
      value: v,
      hashIdentity: h.identity,
      hashSys: h.of(s),
      hashSysAndValue: h.of2(s ?? '', v),
      hashValue: h.of(v),
    });
  }

  /** A date range; null ends are open (a Period without start or end). */
  date(name: string, low: number | null, high: number | null): void {
    if (low === null && high === null) return;
    if (!this.first(`d\0${name}\0${low}\0${high}`)) return;
    this.rows.dates.push({
      name,
      missing: false,
      low,
      high,
      lowOrdinal: low === null ? null : dateOrdinal(low),
      highOrdinal: high === null ? null : dateOrdinal(high),
      hashIdentity: this.hashes(name).identity,
    });
  }

  number(name: string, value: string): void {
    if (!this.first(`n\0${name}\0${value}`)) return;
    this.rows.numbers.push({ name, missing: false, value, hashIdentity: this.hashes(name).identity });
  }

  quantity(name: string, value: string, system: string | null, units: string | null): void {
    if (!this.first(`q\0${name}\0${value}\0${system ?? '\u0001'}\0${units ?? '\u0001'}`)) return;
    const h = this.hashes(name);
    this.rows.quantities.push({
      name,
      missing: false,
      system,
      units,
      value,
      hashIdentity: h.identity,
      hashIdentityAndUnits: h.of(units),
      hashIdentitySysUnits: h.of2(system, units),
    });
    const canonical = system === UCUM_SYSTEM && units ? canonicalUnit(units) : null;
    if (canonical) {
      this.rows.quantitiesNormalized.push({
        name,
        missing: false,
        system,
        units: canonical.unit,
        value: scaled(value, canonical.factor),
        hashIdentity: h.identity,
        hashIdentityAndUnits: h.of(canonical.unit),
        hashIdentitySysUnits: h.of2(system, canonical.unit),
      });
    }
  }

  uri(name: string, value: string | null | undefined): void {
    if (!value || isBlank(value)) return;
    const uri = value.length > MAX_URI_LENGTH ? value.slice(0, MAX_URI_LENGTH) : value;
    if (!this.first(`u\0${name}\0${uri}`)) return;
    const h = this.hashes(name);
    this.rows.uris.push({ name, missing: false, uri, hashIdentity: h.identity, hashUri: h.of(uri) });
  }

  coords(name: string, latitude: number, longitude: number): void {
    if (!this.first(`c\0${name}\0${latitude}\0${longitude}`)) return;
    this.rows.coords.push({ name, latitude, longitude, hashIdentity: this.hashes(name).identity });
  }

  link(name: string, path: string, targetType: string | null, targetId: string | null, targetUrl: string | null, targetVersion: string | null): void {
    const key = `l\0${name}\0${path}\0${targetType}\0${targetId}\0${targetUrl}\0${targetVersion}`;
    if (!this.first(key)) return;
    this.rows.links.push({ path, name, targetType, targetId, targetUrl, targetVersion });
  }
}
