/**
 * Long loops in a server that serves meanwhile (imports, index builds, bulk writes) call this now
 * and then: other requests' callbacks run before the loop goes on.
 */
export const yieldToOthers = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
