/**
 * The FHIR core, built once per app: search parameter registry, validator, indexer and the
 * FHIR service on the database pool.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { createR4Registry, type SearchParamRegistry } from '../src/indexing/registry.ts';
import { extractIndexes } from '../src/indexing/extract.ts';
import { createValidator } from '../src/fhir/validation/index.ts';
import { FhirService } from '../src/fhir/service.ts';
import type { SearchParamInfo, SearchParamLookup } from '../src/fhir/ports.ts';
import { badRequest } from '../src/fhir/errors.ts';
import fs from 'node:fs';
import path from 'node:path';
import type { Bundle, SearchParameter } from '@medplum/fhirtypes';

declare module 'fastify' {
  interface FastifyInstance {
    searchParams: SearchParamRegistry;
  }
}

export function paramLookup(registry: SearchParamRegistry): SearchParamLookup {
  const info = (p: ReturnType<SearchParamRegistry['get']> & object): SearchParamInfo => ({
    code: p.code,
    type: p.type,
    paths: p.parts.map((x) => x.path),
    targets: [...p.target],
    url: p.definition.url,
    components: p.type === 'composite' ? (p.definition.component ?? []).map((x) => registry.byUrl(x.definition ?? '')?.code ?? '?') : undefined,
  });
  return {
    get: (type, code) => {
      const p = registry.get(type, code);
      return p && info(p);
    },
    list: (type) => registry.forType(type).map(info),
  };
}

/** SearchParameters in profiles/search-parameters/*.json (a SearchParameter or a Bundle of them). */
function readProfileSearchParameters(profilesDir: string): SearchParameter[] {
  const dir = path.join(profilesDir, 'search-parameters');
  if (!fs.existsSync(dir)) return [];
  const out: SearchParameter[] = [];
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const doc = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as SearchParameter | Bundle;
    if (doc.resourceType === 'SearchParameter') out.push(doc);
    else for (const e of doc.entry ?? []) if (e.resource?.resourceType === 'SearchParameter') out.push(e.resource);
  }
  return out;
}

export default fp(
  async function core(app: FastifyInstance) {
    const registry = createR4Registry();
    for (const sp of readProfileSearchParameters(app.config.profilesDir)) registry.addChecked(sp);
    // SearchParameters stored through the API stay searchable across restarts.
    const { rows } = await app.pg.query<{ json: string }>(`SELECT v.res_text_vc AS json FROM hfj_resource r
      JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver
      WHERE r.res_type = 'SearchParameter' AND r.res_deleted_at IS NULL ORDER BY r.res_id`);
    for (const { json } of rows) {
      const sp = JSON.parse(json) as SearchParameter;
      if (sp.status === 'retired') continue;
      try {
        registry.addChecked(sp);
      } catch (err) {
        app.log.warn({ code: sp.code, err: String(err) }, 'a stored SearchParameter cannot be used for search');
      }
    }
    const validator = await createValidator({ profilesDir: app.config.profilesDir });
    const service = new FhirService({
      onSearchParameter: (sp) => {
        try {
          registry.addChecked(sp);
        } catch (err) {
          throw badRequest(`SearchParameter ${sp.code} cannot be used for search: ${(err as Error).message}`, ['SearchParameter.expression']);
        }
      },
      pool: app.pg,
      searchPool: app.pgSearch,
      validator,
      indexer: { extract: (resource, partitionId) => extractIndexes(resource, registry, { partitionId }) },
      params: paramLookup(registry),
    });
    app.decorate('searchParams', registry);
    app.decorate('fhir', service);
  },
  { name: 'core', dependencies: ['db'] },
);
