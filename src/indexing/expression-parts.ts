/**
 * Split a search parameter's expression into its union parts and decide which apply to a type.
 *
 * R4 search parameters shared by many resources are written as one union,
 * `AllergyIntolerance.code | Condition.code | ...`. Like HAPI (BaseSearchParamExtractor.split),
 * we split on the top-level `|` and evaluate, per resource type, only the parts that start with
 * that type, a supertype (`Resource`, `DomainResource`) or no type at all (`name | alias`).
 * Each part's text is also HAPI's `src_path` for the links it finds.
 * See: https://hl7.org/fhir/R4/searchparameter-definitions.html#SearchParameter.expression
 */
import { AsAtom, DotAtom, IndexerAtom, parseFhirPath, SymbolAtom, UnionAtom, type Atom } from '@medplum/core';
import { allResourceTypes, NON_DOMAIN_RESOURCES } from './definitions.ts';

export interface SplitExpression {
  /** The parts' texts, trimmed. One part when the expression is not a top-level union. */
  parts: string[];
  /** The whole expression is a union: FHIRPath removes duplicate values across its parts. */
  union: boolean;
}

/** Split at `|` outside parentheses, brackets and quoted strings. */
function splitText(expression: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote = '';
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = '';
    } else if (c === "'" || c === '"' || c === '`') {
      quote = c;
    } else if (c === '(' || c === '[' || c === '{') {
      depth++;
    } else if (c === ')' || c === ']' || c === '}') {
      depth--;
    } else if (c === '|' && depth === 0) {
      parts.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expression.slice(start).trim());
  return parts.filter((p) => p.length > 0);
}

function countUnionLeaves(atom: Atom): number {
  return atom instanceof UnionAtom ? countUnionLeaves(atom.left) + countUnionLeaves(atom.right) : 1;
}

/**
 * Split an expression into union parts. The text split is checked against @medplum/core's parse
 * tree: if `|` binds differently than a plain split assumes (`a = b | c` is `a = (b | c)`), the
 * expression stays whole.
 */
export function splitExpression(expression: string): SplitExpression {
  const root = parseFhirPath(expression).child;
  const union = root instanceof UnionAtom;
  const parts = splitText(expression);
  if (!union || parts.length !== countUnionLeaves(root)) return { parts: [expression.trim()], union };
  return { parts, union };
}

/** The symbol a path starts from: `Observation` in `(Observation.value as Quantity).code`. */
function leadingSymbol(atom: Atom): string | undefined {
  let a: Atom = atom;
  for (;;) {
    if (a instanceof SymbolAtom) return a.name;
    if (a instanceof DotAtom || a instanceof AsAtom) a = a.left;
    else if (a instanceof IndexerAtom) a = a.left;
    else return undefined;
  }
}

const SUPERTYPES = new Set(['Resource', 'DomainResource']);

/**
 * The text to evaluate for `resourceType`, or undefined when the part is about another type.
 * A part on a supertype is rewritten to the concrete type (`Resource.meta` → `Patient.meta`):
 * @medplum/core only matches a resource by its own type name, HAPI also by its supertypes.
 */
export function applicablePart(part: string, resourceType: string): string | undefined {
  const start = leadingSymbol(parseFhirPath(part).child);
  if (start === undefined || start === resourceType) return part;
  if (SUPERTYPES.has(start)) {
    if (start === 'DomainResource' && NON_DOMAIN_RESOURCES.has(resourceType)) return undefined;
    return part.replace(new RegExp(`^(\\(*\\s*)${start}\\b`), `$1${resourceType}`);
  }
  // A lower-case start is an element of the resource itself (`name | alias` on InsurancePlan).
  if (allResourceTypes().has(start)) return undefined;
  return part;
}
