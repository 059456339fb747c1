/**
 * Giving memory back to the system when the process has garbage behind it and nothing to do.
 *
 * V8 keeps the heap it grew for a burst of work long after the garbage is collected: building the app
 * reads large definition files (the FHIR R4 StructureDefinitions, the JSON schema), and a burst of
 * requests grows the young generation (up to 2 × 64 MB on a large machine) and lets the old one fill up
 * to a few times what is live before collecting it. An idle server never runs short of memory, so V8
 * never shrinks it back. It shrinks the heap to what is live only in a memory-reducing full collection,
 * the one it runs on a low-memory notification; the inspector's HeapProfiler.collectGarbage runs exactly
 * that one. An in-process inspector session needs no flag and no open port; it is closed again at once.
 *
 * See: https://nodejs.org/api/inspector.html and
 * https://chromedevtools.github.io/devtools-protocol/tot/HeapProfiler/#method-collectGarbage
 */
import { Session } from 'node:inspector';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import type { FastifyInstance } from 'fastify';

/**
 * Lets the old generation grow by half at most past what survived the last full collection, where
 * V8 would let it grow to several times that before collecting again: a transaction's objects, or a
 * cursor's rows, live long enough to be promoted, so an ingest grew the heap to ~200 MB around
 * ~50 MB live, and an export in a worker to ~350 MB. At the same throughput (bench/ingest.ts,
 * bench/export.ts). For the processes that do the work (the server, the worker): V8 reads it when it
 * next sizes the heap, so calling it before the work starts is enough.
 */
export function limitHeapGrowth(): void {
  setFlagsFromString('--heap-growing-percent=50');
}

/**
 * Runs V8's memory-reducing full collection (~50-150 ms, during which the process stands still): call it
 * when a burst of garbage is over, never on a request path. Resolves false when the inspector is not
 * available (a Node.js built without it, or the permission model), in which case nothing was done.
 */
export async function releaseUnusedHeap(): Promise<boolean> {
  let session: Session;
  try {
    session = new Session();
    session.connect();
  } catch {
    return false;
  }
  try {
    await new Promise<void>((resolve, reject) => session.post('HeapProfiler.collectGarbage', (err) => (err ? reject(err) : resolve())));
    return true;
  } finally {
    session.disconnect();
  }
}

export interface IdleReleaseOptions {
  /** How long without a request starting or ending counts as idle. */
  idleMs?: number;
  /** How much the heap must have grown since the last release to be worth another (health probes never do). */
  growthBytes?: number;
}

/**
 * Releases the heap once the app is ready, then again whenever the app has been idle for `idleMs` with a
 * heap at least `growthBytes` larger than after the last release. For the server process (src/server.ts):
 * call before the app is ready (it adds hooks).
 */
export function releaseHeapWhenIdle(app: FastifyInstance, options: IdleReleaseOptions = {}): void {
  const idleMs = options.idleMs ?? 10_000;
  const growthBytes = options.growthBytes ?? 32 * 1024 * 1024;
  let lastActivity = Date.now();
  let released = Infinity; // the heap's size after the last release; none yet
  let releasing = false;
  const release = async () => {
    releasing = true;
    try {
      await releaseUnusedHeap();
    } catch (err) {
      app.log.warn({ err: String(err) }, 'could not release unused heap');
    } finally {
      released = getHeapStatistics().total_heap_size;
      releasing = false;
    }
  };
  const touch = async () => {
    lastActivity = Date.now();
  };
  app.addHook('onRequest', touch);
  app.addHook('onResponse', touch);
  // Start-up garbage: released before the app listens.
  app.addHook('onReady', release);
  const timer = setInterval(
    () => {
      if (releasing || Date.now() - lastActivity < idleMs) return;
      if (getHeapStatistics().total_heap_size < released + growthBytes) return;
      void release();
    },
    Math.max(1000, idleMs / 2),
  );
  timer.unref();
  app.addHook('onClose', async () => clearInterval(timer));
}
