/**
 * Giving memory back to the system once the start-up work is done.
 *
 * Building the app reads large definition files (the FHIR R4 StructureDefinitions, the JSON schema): their
 * garbage is collected, but V8 keeps the heap it grew for them (a young generation sized for that burst,
 * up to 2 × 64 MB here, and emptied old-generation pages) until memory gets short, which never happens on
 * an idle server. V8 shrinks its heap to what is live only in a memory-reducing full collection, the one
 * it runs on a low-memory notification; the inspector's HeapProfiler.collectGarbage runs exactly that one.
 * The in-process inspector session needs no flag and no open port; it is closed again right away.
 *
 * See: https://nodejs.org/api/inspector.html and
 * https://chromedevtools.github.io/devtools-protocol/tot/HeapProfiler/#method-collectGarbage
 */
import { Session } from 'node:inspector';

/**
 * Runs V8's memory-reducing full collection (~50-150 ms, the process stands still meanwhile): call it when
 * a burst of start-up garbage is over, never on a request path. Resolves false when the inspector is not
 * available (a Node.js built without it), in which case nothing was done.
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
    await new Promise<void>((resolve, reject) =>
      session.post('HeapProfiler.collectGarbage', (err) => (err ? reject(err) : resolve())),
    );
    return true;
  } finally {
    session.disconnect();
  }
}
