/**
 * Tags, security labels and profiles come back as written, in order, from every read: a version
 * names its tags by hfj_tag_def id and the repository knows their definitions (a per-process cache
 * filled from hfj_tag_def). The first read after a write finds none cached (a write caches ids,
 * not definitions), so it reads them from the table; later reads come from the cache.
 */
import t from 'tap';
import { buildTestApp } from '../helper.ts';
import { FHIR, FHIR_JSON, send, type Json } from './search-support.ts';

const app = await buildTestApp(t);

const meta = {
  profile: ['http://example.org/StructureDefinition/b', 'http://example.org/StructureDefinition/a'],
  tag: [
    { system: 'urn:tags', code: 'zeta', display: 'Last in the alphabet, first here' },
    { system: 'urn:tags', code: 'alpha', version: '2', userSelected: true },
    { code: 'no-system' },
  ],
  security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }],
};
const created = await send(app, {
  method: 'POST',
  url: `${FHIR}/Observation`,
  headers: { 'content-type': FHIR_JSON },
  payload: { resourceType: 'Observation', status: 'final', code: { text: 'tagged' }, meta },
});
t.equal(created.statusCode, 201, 'created');
const id = created.json().id as string;
const { tag, profile, security } = created.json().meta;
t.same({ tag, profile, security }, meta, 'the create answers them as written');

for (const round of ['first (from hfj_tag_def)', 'again (from the cache)']) {
  t.test(`read, search and history, ${round}`, async (t) => {
    const read = (await send(app, { method: 'GET', url: `${FHIR}/Observation/${id}` })).json();
    t.same(read.meta.tag, meta.tag, 'read: the tags in order');
    t.same(read.meta.profile, meta.profile, 'read: the profiles in order');
    t.same(read.meta.security, meta.security, 'read: the security label');
    const search = (await send(app, { method: 'GET', url: `${FHIR}/Observation?_tag=urn:tags|alpha` })).json();
    t.same(
      search.entry?.map((e: Json) => e.resource.meta.tag),
      [meta.tag],
      'search: the same tags',
    );
    const history = (await send(app, { method: 'GET', url: `${FHIR}/Observation/${id}/_history` })).json();
    t.same(
      history.entry?.map((e: Json) => e.resource.meta.security),
      [meta.security],
      'history: the same label',
    );
    const vread = (await send(app, { method: 'GET', url: `${FHIR}/Observation/${id}/_history/1` })).json();
    t.same(vread.meta.tag, meta.tag, 'vread: the same tags');
  });
}

t.test('a version without tags has none', async (t) => {
  const res = await send(app, {
    method: 'PUT',
    url: `${FHIR}/Observation/${id}`,
    headers: { 'content-type': FHIR_JSON },
    payload: { resourceType: 'Observation', id, status: 'final', code: { text: 'bare' } },
  });
  t.equal(res.statusCode, 200, 'updated');
  const read = (await send(app, { method: 'GET', url: `${FHIR}/Observation/${id}` })).json();
  t.equal(read.meta.tag, undefined, 'no tags');
  t.equal(read.meta.versionId, '2', 'version 2');
  const v1 = (await send(app, { method: 'GET', url: `${FHIR}/Observation/${id}/_history/1` })).json();
  t.same(v1.meta.tag, meta.tag, 'version 1 keeps its tags');
});
