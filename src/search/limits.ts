/** The limits of a search: page sizes, caps on what is counted, kept and included, and on its criteria. */
export const DEFAULT_COUNT = 20;
export const MAX_COUNT = 1000;
/** Sorted searches page stably through this many matches. */
export const SNAPSHOT_CAP = 10_000;
/** Without `_total`, the total is counted up to this many matches and left out past it. */
export const COUNT_CAP = 10_000;
/** Included resources per page, at most (an outcome entry says when more were left out). */
export const MAX_INCLUDES = 1000;
/** A search takes at most this many criteria, includes and sort keys (each is a join). */
export const MAX_CRITERIA = 20;
export const MAX_INCLUDE_PARAMS = 20;
export const MAX_SORT_KEYS = 8;
/** `:iterate` follows at most this many rounds. */
export const MAX_ITERATE = 4;
