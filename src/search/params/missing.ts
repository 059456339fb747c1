/**
 * `:missing=true|false` on any parameter: whether the resource has an index row (or link, tag,
 * source) for it.
 * See: https://hl7.org/fhir/R4/search.html#missing
 */
import { badRequest } from '../../fhir/errors.ts';
import { PROFILE, SECURITY, TAG } from '../../storage/meta.ts';
import { components } from './composite.ts';
import { h, lookup, TABLE, type ConditionContext } from './context.ts';
import { targetFilter } from './reference.ts';

export function missingCondition(c: ConditionContext, alias: string, type: string, code: string, rawValue: string): string {
  if (rawValue !== 'true' && rawValue !== 'false') throw badRequest(`${code}:missing takes true or false, not "${rawValue}".`);
  const missing = rawValue === 'true';
  let exists: string;
  switch (code) {
    case '_id':
    case '_lastUpdated':
      return missing ? 'false' : 'true';
    case '_tag':
    case '_security':
    case '_profile': {
      const tagType = code === '_tag' ? TAG : code === '_security' ? SECURITY : PROFILE;
      exists = `EXISTS (SELECT 1 FROM hfj_res_tag rt JOIN hfj_tag_def d ON d.tag_id = rt.tag_id WHERE rt.res_id = ${alias}.res_id AND rt.owner_id = ${alias}.owner_id AND d.tag_type = ${c.b.param(tagType)})`;
      break;
    }
    case '_source':
      exists = `EXISTS (SELECT 1 FROM hfj_res_ver sv WHERE sv.res_id = ${alias}.res_id AND sv.owner_id = ${alias}.owner_id AND sv.res_ver = ${alias}.res_ver AND sv.source_uri IS NOT NULL)`;
      break;
    default: {
      const sp = lookup(c, type, code);
      if (sp.type === 'reference') {
        exists = `EXISTS (SELECT 1 FROM hfj_res_link l WHERE l.src_resource_id = ${alias}.res_id AND l.owner_id = ${alias}.owner_id AND l.src_path = ANY(${c.b.param(sp.paths)})${targetFilter(c.b, sp, true)})`;
      } else if (sp.type === 'composite') {
        const comps = components(c, type, sp);
        exists = comps
          .map(
            (p) =>
              `EXISTS (SELECT 1 FROM ${TABLE[p.type]} x WHERE x.res_id = ${alias}.res_id AND x.owner_id = ${alias}.owner_id AND x.hash_identity = ${c.b.param(h([type, p.code]))})`,
          )
          .join(' AND ');
      } else {
        const table = TABLE[sp.type];
        if (!table) throw badRequest(`:missing is not supported on ${sp.type} parameters such as ${code}.`);
        exists = `EXISTS (SELECT 1 FROM ${table} x WHERE x.res_id = ${alias}.res_id AND x.owner_id = ${alias}.owner_id AND x.hash_identity = ${c.b.param(h([type, code]))})`;
      }
    }
  }
  return missing ? `NOT (${exists})` : exists;
}
