/**
 * HAPI's index hashes for one (resource type, parameter, partition), remembered.
 *
 * Every row of a parameter hashes (type, param, ...values), and the same values come back again
 * and again during an ingest (LOINC codes, statuses, systems, units). hapiHash is a pure function,
 * so its results are kept in small per-parameter maps, emptied when they grow past a bound.
 * See ../storage/hash.ts and hapi-storage.md for the hash itself.
 */
import { hapiHash } from '../storage/hash.ts';

/** Entries kept per parameter and arity before that map is emptied. */
const MAX_ENTRIES = 20_000;
/** Entries kept in all (~100 bytes each); past it every memo is dropped (many partitions × params). */
const MAX_TOTAL = 500_000;
let total = 0;
const all = new Map<string, ParamHashes>();

/** Count one more remembered entry (or memo); past the bound, forget every memo. */
function count(): void {
  if (++total > MAX_TOTAL) {
    all.clear();
    total = 0;
  }
}

function remember(map: Map<string, bigint>, key: string, h: bigint): void {
  if (map.size >= MAX_ENTRIES) {
    total = Math.max(0, total - map.size);
    map.clear();
  }
  count();
  map.set(key, h);
}

export class ParamHashes {
  readonly resourceType: string;
  readonly param: string;
  readonly partitionId: number | null;
  /** hash(type, param): HAPI's hash_identity. */
  readonly identity: bigint;
  private readonly one = new Map<string, bigint>();
  private readonly two = new Map<string, bigint>();
  private oneNull: bigint | undefined;

  constructor(resourceType: string, param: string, partitionId: number | null) {
    this.resourceType = resourceType;
    this.param = param;
    this.partitionId = partitionId;
    this.identity = hapiHash([resourceType, param], partitionId);
  }

  /** hash(type, param, v) */
  of(v: string | null): bigint {
    if (v === null) return (this.oneNull ??= hapiHash([this.resourceType, this.param, null], this.partitionId));
    let h = this.one.get(v);
    if (h === undefined) {
      h = hapiHash([this.resourceType, this.param, v], this.partitionId);
      remember(this.one, v, h);
    }
    return h;
  }

  /** hash(type, param, a, b) */
  of2(a: string | null, b: string | null): bigint {
    // Length-prefixing `a` keeps the key unambiguous whatever the values contain.
    const key = (a === null ? 'N' : a.length + ':' + a) + (b === null ? 'N' : 'S' + b);
    let h = this.two.get(key);
    if (h === undefined) {
      h = hapiHash([this.resourceType, this.param, a, b], this.partitionId);
      remember(this.two, key, h);
    }
    return h;
  }
}

/** The (process-wide) hash memo of one parameter of one type in one partition. */
export function paramHashes(resourceType: string, param: string, partitionId: number | null): ParamHashes {
  const key = `${partitionId ?? ''}|${resourceType}|${param}`;
  let h = all.get(key);
  if (!h) {
    count();
    all.set(key, (h = new ParamHashes(resourceType, param, partitionId)));
  }
  return h;
}
