/**
 * Long loops in a server that serves meanwhile (imports, index builds, bulk writes) call this now
 * and then: other requests' callbacks run before the loop goes on.
 */
export const yieldToOthers = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Sleeps that end early when woken: an idle loop (the sync lanes, the webhook deliveries) looks
 * again after a while, or at once when this process has queued work for it. A wake that finds no
 * one asleep is kept for the next sleep, so work queued while the loop was busy is not missed.
 */
export class Alarm {
  private readonly sleepers = new Set<() => void>();
  private pending = false;

  sleep(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }

  /** Ends every sleep now (or the next, when none is under way). */
  wake(): void {
    if (!this.sleepers.size) this.pending = true;
    for (const done of [...this.sleepers]) done();
  }
}
