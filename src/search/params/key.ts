/**
 * The parts of a query key (`code:modifier.chain`) and the names the search itself answers.
 * See: https://hl7.org/fhir/R4/search.html#modifiers, #chaining
 */

/** Parameters that apply to every type and are answered from hfj_resource, the tag tables or hfj_res_ver. */
export const COMMON_PARAMS = ['_id', '_lastUpdated', '_tag', '_profile', '_security', '_source', '_has'] as const;

/** Result-shaping parameters: not conditions. */
export const CONTROL_PARAMS = new Set([
  '_count',
  '_sort',
  '_format',
  '_pretty',
  '_summary',
  '_elements',
  '_total',
  '_include',
  '_revinclude',
  '_type',
  '_page',
  '_snapshot',
  '_offset',
  '_dedup',
]);

export interface Key {
  code: string;
  modifier: string;
  /** The rest of a chained key after the first `.`, e.g. `organization.name` of `patient.organization.name`. */
  chain: string | null;
}

export function parseKey(key: string): Key {
  const dot = key.indexOf('.');
  const head = dot < 0 ? key : key.slice(0, dot);
  const colon = head.indexOf(':');
  return {
    code: colon < 0 ? head : head.slice(0, colon),
    modifier: colon < 0 ? '' : head.slice(colon + 1),
    chain: dot < 0 ? null : key.slice(dot + 1),
  };
}

/** The parameter a query key names: `subject` of `subject:Patient.name`. */
export const paramCode = (key: string): string => key.split(/[:.]/)[0];
