/**
 * Runs of the directory's FHIR view (src/directory/fhir-view.ts) in one process: one at a time; a
 * call during a run asks for one more run after it; closing ends the run under way between chunks.
 */
import type { FastifyBaseLogger } from 'fastify';
import { syncFhirView, type ViewDeps } from './fhir-view.ts';

export class ViewRefresh {
  private readonly deps: ViewDeps;
  private readonly log: FastifyBaseLogger;
  private run: Promise<void> | undefined;
  private again = false;
  private closing = false;

  constructor(deps: ViewDeps, log: FastifyBaseLogger) {
    this.deps = deps;
    this.log = log;
  }

  /** Brings the view up to date; settles when this run is done (failures are logged, never thrown). */
  update(): Promise<void> {
    // A call during a run asks for one more run after it (what it must see may have come too late).
    if (this.closing) return Promise.resolve();
    if (this.run) return ((this.again = true), this.run);
    const started = Date.now();
    this.run = syncFhirView(
      this.deps,
      (done, total) => this.log.info({ done, total }, 'directory: FHIR view, systems written'),
      () => this.closing,
    )
      .then((s) => {
        if (s.systems) this.log.info({ ...s, ms: Date.now() - started }, 'directory: FHIR view up to date');
      })
      .catch((err) =>
        this.log.error({ err: String(err) }, 'directory: the FHIR view could not be brought up to date; it will be tried again on the next start'),
      )
      .finally(() => {
        this.run = undefined;
        if (this.again && !this.closing) void this.update();
        this.again = false;
      });
    return this.run;
  }

  /** No run starts from now on; waits for the one under way (it stops after its chunk). */
  async close(): Promise<void> {
    this.closing = true;
    await this.run;
  }
}
