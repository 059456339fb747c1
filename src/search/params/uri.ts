/**
 * URI parameters over hfj_spidx_uri: the whole URI, :below (a prefix) and :above.
 * See: https://hl7.org/fhir/R4/search.html#uri
 */
import { badRequest } from '../../fhir/errors.ts';
import { likeEscape } from '../../storage/sql.ts';
import type { IndexMatch } from '../sql-builder.ts';
import { unescape } from '../values.ts';
import { h, inIndex, type ConditionContext } from './context.ts';

export function uriCondition(c: ConditionContext, alias: string, type: string, code: string, modifier: string, values: string[]): IndexMatch {
  const uris = values.map(unescape);
  switch (modifier) {
    case '':
    case 'not':
      return inIndex(
        c,
        alias,
        type,
        'hfj_spidx_uri',
        `x.hash_uri = ANY(${c.b.param(uris.map((u) => h([type, code, u])))}::bigint[])`,
        modifier === 'not',
      );
    case 'below':
      return inIndex(
        c,
        alias,
        type,
        'hfj_spidx_uri',
        `x.hash_identity = ${c.b.param(h([type, code]))} AND (${uris.map((u) => `x.sp_uri LIKE ${c.b.param(`${likeEscape(u)}%`)}`).join(' OR ')})`,
      );
    case 'above': {
      // Stored URIs of which the search value is an extension: every prefix of it that ends at a "/".
      const prefixes = new Set<string>();
      for (const u of uris) {
        prefixes.add(u);
        for (let i = u.indexOf('//') + 2; i > 1 && i < u.length; i++) if (u[i] === '/') prefixes.add(u.slice(0, i));
      }
      return inIndex(c, alias, type, 'hfj_spidx_uri', `x.hash_uri = ANY(${c.b.param([...prefixes].map((u) => h([type, code, u])))}::bigint[])`);
    }
    default:
      throw badRequest(`The modifier :${modifier} is not supported on uri parameters such as ${code}.`);
  }
}
