// The compiled rules (src/fhir/validation/compiled-rules.ts) against @medplum/core's validateResource, which
// they replace: on every official R4 example, every Synthea resource, and several hundred resources broken on
// purpose, both must report the same issues (errors, and the "Conflicting choice" warnings the definitions
// layer turns into errors), or fail alike.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { OperationOutcomeError, getDataType, isPrimitiveType, tryGetDataType, validateResource } from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { compiledBaseIssues, compiledRulesFallbacks } from '../../../src/fhir/validation/compiled-rules.ts';
import { ensureBaseDefinitionsIndexed } from '../../../src/fhir/validation/medplum-definitions.ts';

const root = join(import.meta.dirname, '../../..');
ensureBaseDefinitionsIndexed();

/** What a run says, in a comparable form: sorted `severity|code|expression|text`, or the exception. */
function outcome(check: () => OperationOutcomeIssue[]): string[] {
  const form = (issues: OperationOutcomeIssue[]): string[] =>
    issues
      .filter((i) => i.severity === 'error' || i.details?.text?.startsWith('Conflicting choice'))
      .map((i) => `${i.severity}|${i.code}|${(i.expression ?? []).join(',')}|${i.details?.text}`)
      .sort();
  try {
    return form(check());
  } catch (err) {
    if (err instanceof OperationOutcomeError) return form(err.outcome.issue ?? []);
    return [`thrown|${(err as Error).message}`];
  }
}

/** Each engine gets its own copy: @medplum/core writes into some malformed input. */
function compare(resource: Resource): { medplum: string[]; compiled: string[] } {
  return {
    medplum: outcome(() => validateResource(structuredClone(resource))),
    compiled: outcome(() => compiledBaseIssues(structuredClone(resource))),
  };
}

function readResources(dir: string, filter: (file: string) => boolean): [string, Resource][] {
  const out: [string, Resource][] = [];
  for (const file of readdirSync(dir).filter(filter).sort()) {
    const json = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Resource & { entry?: { resource?: Resource }[] };
    if (json.resourceType) out.push([file, json]);
    if (json.resourceType === 'Bundle') {
      json.entry?.forEach((e, i) => e.resource && out.push([`${file}#entry[${i}]`, e.resource]));
    }
  }
  return out;
}

function differences(t: { comment(message: string): void }, corpus: [string, Resource][]): string[] {
  const differing: string[] = [];
  for (const [name, resource] of corpus) {
    const { medplum, compiled } = compare(resource);
    if (JSON.stringify(medplum) !== JSON.stringify(compiled)) {
      differing.push(name);
      if (differing.length <= 5) t.comment(`${name}\n  medplum:  ${medplum.join('; ')}\n  compiled: ${compiled.join('; ')}`);
    }
  }
  return differing;
}

const examples = readResources(
  join(root, 'node_modules/hl7.fhir.r4.examples'),
  (f) => f.endsWith('.json') && f !== 'package.json' && !f.startsWith('ig-'),
);
// ../shared/synthea sits beside the project in this workspace; elsewhere its test says so and skips.
const syntheaDir = join(root, '../shared/synthea');
const synthea = existsSync(syntheaDir) ? readResources(syntheaDir, (f) => f.endsWith('.json')) : [];

t.test('the official R4 examples, bundle entries included', async (t) => {
  t.ok(examples.length > 5000, `${examples.length} resources`);
  t.same(differences(t, examples), [], 'no resource on which the two differ');
});

t.test('the Synthea resources', { skip: synthea.length ? false : `no bundles in ${syntheaDir}` }, async (t) => {
  t.ok(synthea.length > 1000, `${synthea.length} resources`);
  t.same(differences(t, synthea), [], 'no resource on which the two differ');
});

// --- Mutations -------------------------------------------------------------------------------------------

/** A deterministic pseudo-random sequence (mulberry32), so that a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** A place in a resource where an element is present: its parent object, JSON key, and definition. */
interface Site {
  parent: Record<string, unknown>;
  key: string;
  type: string;
  min: number;
  isArray: boolean;
  choice: string | undefined;
}

function sitesOf(value: Record<string, unknown>, typeName: string, out: Site[]): Site[] {
  const schema = tryGetDataType(typeName);
  if (!schema || !value || typeof value !== 'object') return out;
  for (const [key, element] of Object.entries(schema.elements)) {
    const last = element.path.slice(element.path.lastIndexOf('.') + 1);
    for (const { code } of element.type) {
      const json = last.replace('[x]', code[0].toUpperCase() + code.slice(1));
      if (!(json in value)) continue;
      out.push({
        parent: value,
        key: json,
        type: code,
        min: element.min,
        isArray: !!element.isArray,
        choice: key.endsWith('[x]') ? last.slice(0, -3) : undefined,
      });
      if (isPrimitiveType(code)) continue;
      for (const item of [value[json]].flat()) {
        const own = (item as { resourceType?: string } | null)?.resourceType;
        sitesOf(item as Record<string, unknown>, code === 'Resource' && own ? own : code, out);
      }
    }
  }
  return out;
}

const BAD_PRIMITIVES: Record<string, unknown[]> = {
  date: ['2020-13-45', '20200101', 12],
  dateTime: ['2020-01-01T25:00:00Z', 'yesterday'],
  instant: ['2020-01-01', '2020-01-01T10:00:00'],
  time: ['25:00', '10:00'],
  id: ['bad id!', 'x'.repeat(70)],
  code: [' padded', 'two  spaces', ''],
  uri: ['has space', 42],
  url: ['has space'],
  canonical: ['a b'],
  string: ['   ', '', true],
  markdown: ['\t'],
  boolean: ['true', 1],
  integer: [1.5, '3'],
  positiveInt: [0, -2],
  unsignedInt: [-1, 2.5],
  decimal: ['1.0', Number.NaN],
  base64Binary: ['***', 'abc'],
  oid: ['1.2.3', 'urn:oid:1.02'],
  uuid: ['urn:uuid:XYZ', '6d2b79f5'],
  xhtml: [''],
};

/** One way to break a resource at a site; returns false when it does not apply there. */
type Mutation = (site: Site, pick: () => number, resource: Resource) => boolean;

const ONE = <T>(items: T[], pick: () => number): T => items[Math.floor(pick() * items.length)];

const MUTATIONS: Record<string, Mutation> = {
  'drop a required element': (s) => s.min > 0 && delete s.parent[s.key],
  'duplicate a max-1 element as an array': (s) => !s.isArray && ((s.parent[s.key] = [s.parent[s.key], s.parent[s.key]]), true),
  'an array element given as one value': (s) => s.isArray && ((s.parent[s.key] = (s.parent[s.key] as unknown[])[0]), true),
  'wrong primitive format': (s, pick) => {
    const bad = BAD_PRIMITIVES[s.type];
    if (!bad) return false;
    const value = ONE(bad, pick);
    s.parent[s.key] = s.isArray ? [value] : value;
    return true;
  },
  'a null value': (s, pick) => {
    if (s.isArray && pick() < 0.5) (s.parent[s.key] as unknown[]).push(null);
    else s.parent[s.key] = null;
    return true;
  },
  'an empty value': (s, pick) => ((s.parent[s.key] = ONE<unknown>(['', {}, [], [{}], ['']], pick)), true),
  'an unknown property': (s) => ((s.parent[`${s.key}Bogus`] = 1), true),
  'a complex value given as a string': (s) => !isPrimitiveType(s.type) && ((s.parent[s.key] = 'text'), true),
  'conflicting choice types': (s, pick) => {
    if (!s.choice) return false;
    const other = ONE(['String', 'Boolean', 'Integer', 'Quantity', 'DateTime', 'Period', 'Bogus'], pick);
    const key = `${s.choice}${other}`;
    if (key === s.key) return false;
    s.parent[key] = { String: 'x', Boolean: true, Integer: 3, Quantity: { value: 1 }, DateTime: '2020', Period: {}, Bogus: 1 }[other];
    if (pick() < 0.3) s.parent[`_${key}`] = { id: 'a' };
    return true;
  },
  'an extension without url, or with value and extensions': (s, pick) => {
    if (isPrimitiveType(s.type)) return false;
    const item = [s.parent[s.key]].flat()[0] as Record<string, unknown>;
    if (!item || typeof item !== 'object') return false;
    const broken = ONE(
      [
        { valueString: 'no url' },
        { url: 'http://x', valueString: 'both', extension: [{ url: 'http://y', valueBoolean: true }] },
        { url: 'http://x' },
        { url: 'http://x', valueBogus: 1 },
        { url: 'http://x', valueString: 'a', valueCode: 'b' },
      ],
      pick,
    );
    item[pick() < 0.8 ? 'extension' : 'modifierExtension'] = [broken];
    return true;
  },
  'a primitive extension sibling': (s, pick) => {
    if (!isPrimitiveType(s.type)) return false;
    const ext = ONE<unknown>(
      [
        { extension: [{ url: 'http://x', valueString: 'ok' }] },
        { extension: [{ valueString: 'no url' }] },
        { id: 'a', bogus: 1 },
        'not an object',
        [{ id: 'a' }, null],
        [null, { extension: [{ url: 'http://x' }] }],
        {},
      ],
      pick,
    );
    s.parent[`_${s.key}`] = ext;
    if (pick() < 0.2) delete s.parent[s.key];
    return true;
  },
};

/** Mutations of whole resources: invariants, contained resources. */
const RESOURCE_MUTATIONS: [string, (r: Record<string, unknown>, pick: () => number) => boolean][] = [
  [
    'obs-6: dataAbsentReason with a value',
    (r) => {
      if (r.resourceType !== 'Observation') return false;
      r.dataAbsentReason = { text: 'unknown' };
      r.valueString ??= 'x';
      return true;
    },
  ],
  [
    'obs-7: a component with the code of the observation',
    (r) => {
      if (r.resourceType !== 'Observation') return false;
      r.valueQuantity ??= { value: 1 };
      r.component = [{ code: r.code, valueString: 'same code' }];
      return true;
    },
  ],
  [
    'dom-2: a contained resource that contains one',
    (r) => {
      r.contained = [{ resourceType: 'Basic', id: 'b', code: { text: 'x' }, contained: [{ resourceType: 'Basic', id: 'c', code: { text: 'y' } }] }];
      return true;
    },
  ],
  [
    'dom-4/dom-5: a contained resource with meta',
    (r) => {
      r.contained = [{ resourceType: 'Patient', id: 'p', meta: { versionId: '1', security: [{ code: 'R' }] } }];
      return true;
    },
  ],
  [
    'a broken contained resource',
    (r, pick) => {
      r.contained = [
        ONE<unknown>(
          [
            { resourceType: 'Observation', id: 'o', code: { text: 'x' } },
            { resourceType: 'Observation', status: 'final', code: { text: 'x' }, dataAbsentReason: { text: 'n' }, valueBoolean: true },
            { resourceType: 'NotAType', id: 'n' },
            { id: 'no-type' },
            { resourceType: 'Patient', id: 'p', birthDate: 'soon' },
          ],
          pick,
        ),
      ];
      return true;
    },
  ],
  ['a text without div', (r) => ((r.text = { status: 'generated' }), true)],
];

function mutants(): [string, Resource][] {
  const pick = random(20240611);
  const bases: Resource[] = [];
  const perType = new Map<string, number>();
  for (const [, r] of [...synthea, ...examples.filter((_, i) => i % 97 === 0)]) {
    const n = perType.get(r.resourceType) ?? 0;
    if (n < 3) bases.push(r);
    perType.set(r.resourceType, n + 1);
  }
  const out: [string, Resource][] = [];
  const names = Object.keys(MUTATIONS);
  for (const base of bases) {
    // Each mutation once per base resource, at a random site where it applies.
    for (const name of names) {
      const copy = structuredClone(base) as Resource & Record<string, unknown>;
      const sites = sitesOf(copy, copy.resourceType, []);
      const start = Math.floor(pick() * sites.length);
      for (let k = 0; k < sites.length; k++) {
        const site = sites[(start + k) % sites.length];
        if (MUTATIONS[name](site, pick, copy)) {
          out.push([`${base.resourceType}/${base.id}: ${name} at ${site.key}`, copy]);
          break;
        }
      }
    }
    const [name, mutate] = ONE(RESOURCE_MUTATIONS, pick);
    const copy = structuredClone(base) as Resource & Record<string, unknown>;
    if (mutate(copy, pick)) out.push([`${base.resourceType}/${base.id}: ${name}`, copy]);
  }
  return out;
}

t.test('resources broken on purpose', async (t) => {
  const corpus = mutants();
  const refused = corpus.filter(([, r]) => compare(r).medplum.some((i) => !i.startsWith('warning|'))).length;
  t.comment(`${corpus.length} mutated resources, ${refused} of them refused by @medplum/core`);
  t.ok(corpus.length >= 200, 'at least 200 mutations');
  t.ok(refused >= 200, 'at least 200 of them invalid');
  t.ok(refused / corpus.length > 0.8, 'most of them invalid');
  t.same(differences(t, corpus), [], 'no mutated resource on which the two differ');
  for (const name of [...Object.keys(MUTATIONS), ...RESOURCE_MUTATIONS.map(([n]) => n)]) {
    t.ok(
      corpus.some(([label]) => label.includes(name)),
      `covers: ${name}`,
    );
  }
});

t.test('no type fell back to @medplum/core', async (t) => {
  t.same(compiledRulesFallbacks(), {});
  t.ok(getDataType('Observation'));
});
