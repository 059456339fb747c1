/**
 * Each system's capabilities, as the sync reads them from its CapabilityStatement (src/sync/plan.ts
 * readCapabilities), kept per FHIR base for a while: one cache per process, made by whoever builds
 * the sync's dependencies (plugins/sync.ts) and passed in.
 */
import { readCapabilities, type Capabilities } from './plan.ts';
import { NeedsReauth, type SourceSession } from './session.ts';

/** The CapabilityStatement is read again after this long. */
const CAPABILITIES_MS = 10 * 60_000;

export class CapabilitiesCache {
  private readonly byBase = new Map<string, { at: number; caps: Capabilities }>();

  /** The capabilities of the base read within the last CAPABILITIES_MS, if any. */
  get(base: string): Capabilities | undefined {
    const known = this.byBase.get(base);
    return known && Date.now() - known.at < CAPABILITIES_MS ? known.caps : undefined;
  }

  set(base: string, caps: Capabilities): void {
    this.byBase.set(base, { at: Date.now(), caps });
  }
}

/** The system's capabilities, cached per base (a CapabilityStatement that cannot be read: every type, and read again next run). */
export async function capabilities(cache: CapabilitiesCache, session: SourceSession, base: string): Promise<Capabilities> {
  const known = cache.get(base);
  if (known) return known;
  let cs: unknown;
  try {
    cs = await session.getJson(`${base}/metadata`);
  } catch (err) {
    if (err instanceof NeedsReauth) throw err;
  }
  const caps = readCapabilities(cs);
  if (cs) cache.set(base, caps);
  return caps;
}
