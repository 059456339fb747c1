/**
 * The index rows one resource yields, in the shapes of HAPI's hfj_spidx_* tables, hfj_res_link
 * and hfj_res_param_present. Hashes are HAPI's (see ../storage/hash.ts), as signed 64-bit bigints.
 * Storage adds res_id, res_type, partition_id and sp_updated when it writes them.
 */

export interface StringIndexRow {
  name: string;
  missing: boolean;
  valueExact: string | null;
  valueNormalized: string | null;
  hashIdentity: bigint;
  hashExact: bigint | null;
  hashNormPrefix: bigint | null;
}

export interface TokenIndexRow {
  name: string;
  missing: boolean;
  system: string | null;
  value: string | null;
  hashIdentity: bigint;
  hashSys: bigint | null;
  hashSysAndValue: bigint | null;
  hashValue: bigint | null;
}

export interface DateIndexRow {
  name: string;
  missing: boolean;
  /** Inclusive lower and upper bounds as epoch milliseconds (UTC); null for an open end. */
  low: number | null;
  high: number | null;
  /** yyyymmdd of the bounds, as HAPI's sp_value_low_date_ordinal / sp_value_high_date_ordinal. */
  lowOrdinal: number | null;
  highOrdinal: number | null;
  hashIdentity: bigint;
}

export interface NumberIndexRow {
  name: string;
  missing: boolean;
  /** Decimal as text, exactly as written in the resource (keeps precision). */
  value: string | null;
  hashIdentity: bigint;
}

export interface QuantityIndexRow {
  name: string;
  missing: boolean;
  system: string | null;
  units: string | null;
  value: string | null;
  hashIdentity: bigint;
  hashIdentityAndUnits: bigint | null;
  hashIdentitySysUnits: bigint | null;
}

export interface UriIndexRow {
  name: string;
  missing: boolean;
  uri: string | null;
  hashIdentity: bigint;
  hashUri: bigint | null;
}

export interface CoordsIndexRow {
  name: string;
  latitude: number;
  longitude: number;
  hashIdentity: bigint;
}

/** One outgoing reference (hfj_res_link). Storage resolves targetType/targetId to a res_id. */
export interface LinkRow {
  /** HAPI's src_path: the search parameter's path, e.g. "Observation.subject". */
  path: string;
  /** The search parameter that found it (not a HAPI column; lets search use the link). */
  name: string;
  targetType: string | null;
  targetId: string | null;
  /** Absolute URL or canonical when the target is not a local resource. */
  targetUrl: string | null;
  targetVersion: string | null;
}

/** hfj_res_param_present: whether a reference parameter has a value. */
export interface ParamPresentRow {
  name: string;
  present: boolean;
  hashPresence: bigint;
}

export interface ResourceIndexes {
  strings: StringIndexRow[];
  tokens: TokenIndexRow[];
  dates: DateIndexRow[];
  numbers: NumberIndexRow[];
  quantities: QuantityIndexRow[];
  /** UCUM quantities again, in canonical units (hfj_spidx_quantity_nrml). */
  quantitiesNormalized: QuantityIndexRow[];
  uris: UriIndexRow[];
  coords: CoordsIndexRow[];
  links: LinkRow[];
  present: ParamPresentRow[];
}
