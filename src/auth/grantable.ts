/** Which of the scopes a SMART app asks for it may be granted, given those it registered. */
import { parseScopes } from './scopes.ts';

/**
 * The asked scopes an app may have, given those it registered (none registered: all of them). A
 * wildcard asked (`patient/*.read`) where the app registered per-type scopes gives those of its
 * per-type scopes it covers (same context, no more interactions): a sandbox that grants per type
 * (a simulated vendor) answers `patient/*.read` with the types it grants.
 */
export function grantable(asked: readonly string[], registered: readonly string[]): string[] {
  if (!registered.length) return [...asked];
  const out = new Set<string>();
  for (const s of asked) {
    if (registered.includes(s)) {
      out.add(s);
      continue;
    }
    const [wild] = parseScopes(s);
    if (!wild || wild.type !== '*' || wild.filter.length) continue;
    for (const r of registered) {
      const [one] = parseScopes(r);
      if (one && one.context === wild.context && [...one.interactions].every((i) => wild.interactions.has(i))) out.add(r);
    }
  }
  return [...out];
}
