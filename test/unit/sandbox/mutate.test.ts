/**
 * Changes at the source (src/sandbox/mutate.ts) on a real database: a value edited, records
 * entered in error (each type its own way), records deleted; new versions each time, the rest of
 * the resource (profiles included) kept, the ids answered, bad requests refused.
 */
import path from 'node:path';
import t from 'tap';
import type { Condition, Observation, Resource } from '@medplum/fhirtypes';
import { writeResources } from '../../../src/fhir/bulk.ts';
import { createValidator } from '../../../src/fhir/validation/index.ts';
import { generateSystem } from '../../../src/sandbox/generate.ts';
import { MutateError, mutateRecords, parseMutation } from '../../../src/sandbox/mutate.ts';
import { inTransaction } from '../../../src/storage/transaction.ts';
import { buildTestApp } from '../../helper.ts';

const app = await buildTestApp(t);
const validator = await createValidator({ profilesDir: path.join(import.meta.dirname, '../../../profiles') });
const { app: sandbox } = await app.auth.createApp({ name: 'Mutate sandbox' });
const [person] = generateSystem({ seed: 'mutate', patients: 1, idPrefix: 'mu', systemName: 'Mutate Health', sharedPerson: false, years: 2 }).patients;
const user = (await app.auth.createUser(sandbox.id, 'p1'))!;
const scope = { partitionId: sandbox.id, ownerId: user.id };
await inTransaction(app.pg, (c) =>
  writeResources(
    app.fhir,
    c,
    scope,
    person.resources.map((r) => ({ type: r.resourceType, id: r.id!, resource: r })),
  ),
);
await app.auth.setPassword(sandbox.id, user.id, person.username, person.password);
const deps = { pool: app.pg, bulk: app.fhir };
const read = async <T extends Resource>(type: string, id: string) => {
  const v = await app.fhir.repo.readCurrent(app.pg, scope, type, id);
  return { version: v?.version, deleted: v?.deleted, resource: v?.json ? (JSON.parse(v.json) as T) : undefined };
};
const errors = (r: Resource) => validator.validate(r).filter((i) => i.severity === 'error' || i.severity === 'fatal');

t.test('bad bodies are told what is wrong', async (t) => {
  t.match(parseMutation(null), /The body is/);
  t.match(parseMutation({ username: 'x', type: 'Observation', action: 'change', count: 0 }), /count is a whole number from 1 to 1000/);
  t.match(parseMutation({ username: 'x', type: 'Observation', action: 'edit', count: 1 }), /action is change, enter-in-error or delete/);
  t.match(parseMutation({ username: 'x', type: 'Nonsense', action: 'change', count: 1 }), /not a FHIR R4 resource type/);
  t.match(parseMutation({ username: 'x', type: 'Observation', action: 'change', count: 1, extra: 1 }), /Unknown fields: extra/);
  t.same(parseMutation({ username: 'x', type: 'Observation', action: 'change', count: 2 }), {
    username: 'x',
    type: 'Observation',
    action: 'change',
    count: 2,
  });
  await t.rejects(
    mutateRecords(deps, sandbox.id, { username: 'nobody', type: 'Observation', action: 'change', count: 1 }),
    new MutateError('no_such_sandbox_patient', 'This sandbox system has no patient with the username nobody.'),
  );
  await t.rejects(mutateRecords(deps, sandbox.id, { username: person.username, type: 'Patient', action: 'enter-in-error', count: 1 }), {
    status: 400,
    message: /Patient has no entered-in-error status/,
  });
});

t.test('change: a value edited, a new version, the profile kept; again, changed again', async (t) => {
  const bp = person.resources.find((r) => r.meta?.profile?.some((p) => p.endsWith('us-core-blood-pressure')))!;
  const firstObs = person.resources
    .filter((r) => r.resourceType === 'Observation')
    .slice(0, 3)
    .map((r) => r.id);
  const out = await mutateRecords(deps, sandbox.id, { username: person.username, type: 'Observation', action: 'change', count: 3 });
  t.same(out, { type: 'Observation', action: 'change', ids: firstObs }, 'the oldest three');
  t.ok(firstObs.includes(bp.id), 'the blood pressure panel is among them');
  for (const id of out.ids) {
    const { version, resource } = await read<Observation>('Observation', id);
    const before = person.resources.find((r) => r.id === id) as Observation;
    t.equal(version, 2);
    t.not(
      JSON.stringify(resource!.valueQuantity ?? resource!.component),
      JSON.stringify(before.valueQuantity ?? before.component),
      `${id}: its value changed`,
    );
    t.same(resource!.meta?.profile, before.meta?.profile, `${id}: profile kept`);
    t.same(errors(resource!), []);
  }
  await mutateRecords(deps, sandbox.id, { username: person.username, type: 'Observation', action: 'change', count: 1 });
  t.equal((await read('Observation', firstObs[0]!)).version, 3);
  const enc = await mutateRecords(deps, sandbox.id, { username: person.username, type: 'Encounter', action: 'change', count: 1 });
  const { resource, version } = await read('Encounter', enc.ids[0]);
  t.equal(version, 2);
  t.match(JSON.stringify(resource), /sandbox-amended/, 'a type without a value to edit gets the amendment extension');
  t.same(errors(resource!), []);
});

t.test('enter-in-error: each type its way, those already so skipped', async (t) => {
  const a = await mutateRecords(deps, sandbox.id, { username: person.username, type: 'Observation', action: 'enter-in-error', count: 2 });
  const b = await mutateRecords(deps, sandbox.id, { username: person.username, type: 'Observation', action: 'enter-in-error', count: 2 });
  t.equal(a.ids.length, 2);
  t.equal(new Set([...a.ids, ...b.ids]).size, 4, 'the second call picks two others');
  for (const id of [...a.ids, ...b.ids]) t.equal((await read<Observation>('Observation', id)).resource?.status, 'entered-in-error');
  const c = await mutateRecords(deps, sandbox.id, { username: person.username, type: 'Condition', action: 'enter-in-error', count: 1 });
  const cond = (await read<Condition>('Condition', c.ids[0])).resource!;
  t.equal(cond.verificationStatus?.coding?.[0].code, 'entered-in-error');
  t.notOk(cond.clinicalStatus, 'con-5: no clinical status');
  t.same(errors(cond), []);
});

t.test('delete: the records are gone; more asked than there are, those there are', async (t) => {
  const immunizations = person.resources.filter((r) => r.resourceType === 'Immunization').map((r) => r.id);
  const out = await mutateRecords(deps, sandbox.id, { username: person.username, type: 'Immunization', action: 'delete', count: 1000 });
  t.same(out.ids, immunizations);
  for (const id of out.ids) t.equal((await read('Immunization', id)).deleted, true);
  const again = await mutateRecords(deps, sandbox.id, { username: person.username, type: 'Immunization', action: 'delete', count: 5 });
  t.same(again.ids, [], 'nothing left to delete');
});
