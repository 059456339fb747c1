/**
 * The generator's vendor variations (src/sandbox/generate.ts VendorVariations): off, the records are
 * the ones the seed always gave; on, entered-in-error shares, masked values, notes as Binary
 * renditions (HTML and PDF), more Observation categories and the one Procedure without status, with
 * everything else of the record unchanged and valid.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import t from 'tap';
import type { Binary, DocumentReference, Observation, Resource } from '@medplum/fhirtypes';
import { createValidator } from '../../../src/fhir/validation/index.ts';
import { generateSystem, type GenerateOptions } from '../../../src/sandbox/generate.ts';
import { noteHtml, notePdf } from '../../../src/sandbox/notes.ts';

const validator = await createValidator({ profilesDir: path.join(import.meta.dirname, '../../../profiles') });

const BASE: GenerateOptions = { seed: 'vendor-test', patients: 6, idPrefix: 'a-80000.E', systemName: 'Lakeview Family Practice', years: 3 };
const plain = generateSystem(BASE);
const VARIATIONS: GenerateOptions['vendor'] = {
  enteredInError: { Observation: 0.15, DiagnosticReport: 0.1, DocumentReference: 0.1 },
  maskEnteredInError: true,
  noteBinaries: ['text/html', 'application/pdf'],
  moreCategories: true,
  procedureWithoutStatus: true,
};
const varied = generateSystem({ ...BASE, vendor: VARIATIONS });
const all = (s: ReturnType<typeof generateSystem>): Resource[] => s.patients.flatMap((p) => p.resources);
const sha = (v: unknown): string => createHash('sha256').update(JSON.stringify(v)).digest('hex');

t.test('the built-in systems records are what they were before the options existed', async (t) => {
  // Hashes of JSON.stringify(generateSystem(...)) taken before VendorVariations was added.
  const nv = generateSystem({ seed: 'north-valley', patients: 10, idPrefix: 'nv', systemName: 'North Valley Health (sandbox)' });
  const ls = generateSystem({ seed: 'lakeside', patients: 10, idPrefix: 'ls', systemName: 'Lakeside Medical Group (sandbox)', years: 3 });
  t.equal(sha(nv), '21109d604379fd4e4e0e5a06d0548d300d4908d9ead9e8607a1e43342d27f34e');
  t.equal(sha(ls), 'e89d89d8209414229ed94b1912736a08339890877d07662c168ab3c236d395a0');
  t.equal(sha(generateSystem({ ...BASE, vendor: {} })), sha(plain), 'an empty set of variations changes nothing');
});

t.test('variations keep the rest of the record: the same people, the same resources by id', async (t) => {
  t.same(
    varied.patients.map((p) => p.username),
    plain.patients.map((p) => p.username),
  );
  t.same(varied.shared, plain.shared);
  const ids = new Set(all(varied).map((r) => `${r.resourceType}/${r.id}`));
  t.ok(
    all(plain).every((r) => ids.has(`${r.resourceType}/${r.id}`)),
    'every resource of the plain record is there',
  );
  const plainPatients = plain.patients.map((p) => p.resources[0]);
  t.same(
    varied.patients.map((p) => p.resources[0]),
    plainPatients,
    'Patients unchanged',
  );
  t.ok(
    all(varied).every((r) => r.id!.startsWith('a-80000.E-')),
    'practice-prefixed ids, as athena',
  );
  t.equal(sha(generateSystem({ ...BASE, vendor: structuredClone(VARIATIONS) })), sha(varied), 'deterministic');
});

t.test('entered-in-error: about the share asked, masked Observations have no value', async (t) => {
  const obs = all(varied).filter((r): r is Observation => r.resourceType === 'Observation');
  const eie = obs.filter((o) => o.status === 'entered-in-error');
  const share = eie.length / obs.length;
  t.ok(share > 0.1 && share < 0.2, `${eie.length} of ${obs.length} Observations (${(share * 100).toFixed(1)} %)`);
  for (const o of eie) {
    const values = Object.keys(o).filter((k) => k.startsWith('value'));
    if (o.component)
      t.ok(
        o.component.every((c) => c.dataAbsentReason?.coding?.[0].code === 'masked' && !c.valueQuantity),
        `${o.id}: components masked`,
      );
    else t.same([values, o.dataAbsentReason?.coding?.[0].code], [[], 'masked'], `${o.id}: value removed, masked`);
  }
  for (const type of ['DiagnosticReport', 'DocumentReference']) {
    const n = all(varied).filter((r) => r.resourceType === type && (r as { status: string }).status === 'entered-in-error').length;
    t.ok(n > 0, `${n} ${type}s entered-in-error`);
  }
  t.equal(all(plain).filter((r) => (r as { status?: string }).status === 'entered-in-error').length, 0, 'none without the option');
});

t.test('notes as Binary: relative urls to an HTML and a PDF rendition, owned by the patient', async (t) => {
  for (const p of varied.patients) {
    const binaries = new Map(p.resources.filter((r): r is Binary => r.resourceType === 'Binary').map((b) => [`Binary/${b.id}`, b]));
    const docs = p.resources.filter((r): r is DocumentReference => r.resourceType === 'DocumentReference');
    t.ok(docs.length > 0);
    for (const doc of docs) {
      t.same(
        doc.content.map((c) => c.attachment.contentType),
        ['text/html', 'application/pdf'],
      );
      for (const { attachment } of doc.content) {
        t.match(attachment.url, /^Binary\/a-80000\.E-bin-\d+-\d+$/);
        const bin = binaries.get(attachment.url!)!;
        t.equal(bin.contentType, attachment.contentType);
        t.equal(bin.securityContext?.reference, `Patient/${p.resources[0].id}`);
        const bytes = Buffer.from(bin.data!, 'base64');
        t.equal(bytes.length, attachment.size);
        if (attachment.contentType === 'text/html')
          t.match(bytes.toString('utf8'), /^<!DOCTYPE html>[\s\S]*<h1>(Progress note|History and physical)<\/h1>[\s\S]*Assessment:/);
        else t.match(bytes.subarray(0, 8).toString('latin1'), /^%PDF-1\.4/);
      }
    }
  }
});

t.test('the PDF is well formed: each xref offset points at its object, startxref at the xref', async (t) => {
  const pdf = notePdf('Progress note\nClinic (main)\nAssessment: back\\slash, café.\n' + 'word '.repeat(60)).toString('latin1');
  const xrefAt = Number(/startxref\n(\d+)\n%%EOF\n$/.exec(pdf)?.[1]);
  t.equal(pdf.slice(xrefAt, xrefAt + 4), 'xref');
  const offsets = [...pdf.slice(xrefAt).matchAll(/^(\d{10}) 00000 n $/gm)].map((m) => Number(m[1]));
  t.equal(offsets.length, 5);
  offsets.forEach((o, i) => t.equal(pdf.slice(o, o + `${i + 1} 0 obj`.length), `${i + 1} 0 obj`));
  const length = Number(/\/Length (\d+)/.exec(pdf)?.[1]);
  const start = pdf.indexOf('stream\n') + 'stream\n'.length;
  t.equal(pdf.slice(start + length, start + length + 10), '\nendstream');
  t.match(pdf, /\(Clinic \\\(main\\\)\) Tj/, 'parentheses escaped');
  t.match(pdf, /caf\?\./, 'outside ASCII replaced');
  t.match(noteHtml('T <x>\nline & more'), /<h1>T &lt;x&gt;<\/h1>\n<p>line &amp; more<\/p>/);
});

t.test('more categories: social-history at each check-up, survey with each screening', async (t) => {
  const cat = (o: Observation) => o.category?.[0].coding?.[0].code;
  const obs = all(varied).filter((r): r is Observation => r.resourceType === 'Observation');
  const social = obs.filter((o) => cat(o) === 'social-history');
  const survey = obs.filter((o) => cat(o) === 'survey');
  const checkups = all(varied).filter((r) => r.resourceType === 'Encounter' && JSON.stringify(r).includes('185349003'));
  t.equal(social.length, checkups.length, `${social.length} smoking statuses, one per check-up`);
  t.ok(
    survey.length > 0 && survey.every((o) => typeof o.valueInteger === 'number' || o.status === 'entered-in-error'),
    `${survey.length} PHQ-2 scores`,
  );
  t.equal(all(plain).filter((r) => r.resourceType === 'Observation' && ['social-history', 'survey'].includes(cat(r as Observation) ?? '')).length, 0);
});

t.test('every varied resource validates, but the one Procedure left without status', async (t) => {
  const failures: string[] = [];
  for (const r of all(varied)) {
    for (const issue of validator.validate(r)) {
      if (issue.severity === 'error' || issue.severity === 'fatal')
        failures.push(`${r.resourceType}/${r.id}: ${issue.diagnostics} at ${issue.expression}`);
    }
  }
  t.equal(failures.length, 1, failures.slice(0, 5).join('\n'));
  t.match(failures[0], /^Procedure\/a-80000\.E-proc-1-1: .*status/);
});
