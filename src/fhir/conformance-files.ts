/**
 * The conformance data under profiles/ (see profiles/README.md): each `.json` file of a folder holds
 * a resource, an array of them, or a Bundle of them. A missing folder holds nothing.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Bundle, Resource } from '@medplum/fhirtypes';

/** The resources of type `resourceType` in `<profilesDir>/<folder>/*.json`, files in name order, with their file. */
export async function readConformanceResources<T extends Resource>(
  profilesDir: string,
  folder: string,
  resourceType: T['resourceType'],
): Promise<{ file: string; resource: T }[]> {
  const dir = join(profilesDir, folder);
  let files: string[];
  try {
    files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: { file: string; resource: T }[] = [];
  for (const file of files) {
    const json: unknown = JSON.parse(await readFile(join(dir, file), 'utf8'));
    const items: unknown[] = Array.isArray(json)
      ? json
      : (json as Bundle)?.resourceType === 'Bundle'
        ? ((json as Bundle).entry ?? []).map((e) => e.resource)
        : [json];
    for (const r of items) if ((r as Resource | undefined)?.resourceType === resourceType) out.push({ file, resource: r as T });
  }
  return out;
}
