/**
 * Per FHIR base, in this process: requests in flight, who waits for a slot, and when the next may
 * start (without a shared limiter). One per process, made by whoever builds the sync's dependencies
 * (plugins/sync.ts), shared by every session of the process (src/sync/session.ts).
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class SystemSlots {
  private readonly perSystem = new Map<string, { n: number; waiting: (() => void)[]; nextAt: number }>();

  /**
   * A slot for one request to `base`: at most `concurrency` at once; with `spaced`, each request
   * 1/ratePerSecond after the one before. Returns the slot's release.
   */
  async acquire(base: string, o: { concurrency: number; ratePerSecond: number }, spaced: boolean): Promise<() => void> {
    let slot = this.perSystem.get(base);
    if (!slot) this.perSystem.set(base, (slot = { n: 0, waiting: [], nextAt: 0 }));
    const s = slot;
    while (s.n >= o.concurrency) await new Promise<void>((r) => s.waiting.push(r));
    s.n++;
    if (spaced) {
      // The rate: each request takes the next free instant, 1/ratePerSecond after the one before.
      const now = Date.now();
      const at = Math.max(now, s.nextAt);
      s.nextAt = at + 1000 / o.ratePerSecond;
      if (at > now) await sleep(at - now);
    }
    return () => {
      s.n--;
      s.waiting.shift()?.();
    };
  }
}
