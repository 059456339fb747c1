/**
 * Compile search-parameter FHIRPath expressions into plain functions.
 *
 * The expression is parsed once by @medplum/core (so precedence and literals are exactly its own),
 * then the syntax tree is turned into closures for the shapes search parameters use: paths, choice
 * types (`as`, `ofType`, `.as()`), unions, `where(...)` with equality, `is`, `resolve()`, `and`/`or`,
 * `exists()`, `extension('url')`, `first()` and indexers. Each closure reproduces @medplum/core's
 * semantics, quirks included (e.g. `as` in either form wants at most one item, as the FHIRPath
 * spec says, and `resolve()` only understands relative references), so the differential test can demand equal
 * output. Anything else runs on @medplum/core's evaluator: see `compiled` on the result.
 * See: https://hl7.org/fhir/R4/fhirpath.html and https://hl7.org/fhirpath/N1/
 */
import {
  AndAtom,
  AsAtom,
  DotAtom,
  EmptySetAtom,
  EqualsAtom,
  evalFhirPathTyped,
  fhirPathEquals,
  fhirPathIs,
  FunctionAtom,
  getExtension,
  IndexerAtom,
  IsAtom,
  LiteralAtom,
  NotEqualsAtom,
  OrAtom,
  parseFhirPath,
  singleton,
  SymbolAtom,
  toTypedValue,
  UnionAtom,
  type Atom,
  type TypedValue,
} from '@medplum/core';
import { distinctValues } from './distinct.ts';
import { isEmptyValue, propertyStep, type Step } from './property.ts';

export interface CompiledExpression {
  readonly expression: string;
  /** True when it runs as compiled closures; false when it runs on @medplum/core's FHIRPath. */
  readonly compiled: boolean;
  /** The values, as `evalFhirPathTyped(expression, [root])` returns them. */
  evaluate(root: TypedValue): TypedValue[];
}

/** Thrown while compiling a shape this module does not handle; the caller falls back. */
class Unsupported extends Error {}

// Fresh arrays every time: callers own what an evaluator returns.
const bool = (b: boolean): TypedValue[] => [{ type: 'boolean', value: b }];
const toJsBoolean = (c: TypedValue[]): boolean => (c.length === 0 ? false : !!c[0].value);
const equal = (x: TypedValue, y: TypedValue): boolean => fhirPathEquals(x, y)[0].value === true;

/** @medplum/core's `singleton(collection, 'boolean')`, used by `and` / `or`. */
function booleanSingleton(c: TypedValue[]): TypedValue | undefined {
  if (c.length === 0) return undefined;
  if (c.length === 1 && c[0].type === 'boolean') return c[0];
  throw new Error(`Expected singleton of type boolean, but found ${JSON.stringify(c)}`);
}

/** Names that @medplum/core would find among a plain object's inherited members (its variables). */
const hasInheritedName = (name: string): boolean => name in Object.prototype;

function typeName(atom: Atom): string {
  if (atom instanceof SymbolAtom && !atom.name.startsWith('$') && !atom.name.startsWith('%')) return atom.name;
  throw new Unsupported('type specifier');
}

function literalString(atom: Atom): string {
  if (atom instanceof LiteralAtom && typeof atom.value.value === 'string') return atom.value.value;
  throw new Unsupported('non-literal argument');
}

/** @medplum/core's `resolve()`: a Reference becomes a stub of the type its relative URL names. */
function resolveRefs(input: TypedValue[]): TypedValue[] {
  const out: TypedValue[] = [];
  for (const e of input) {
    const value = e.value;
    let ref: string | undefined;
    if (typeof value === 'string') {
      ref = value;
    } else if (typeof value === 'object') {
      // As @medplum/core: a null item throws here.
      if (value.resource) {
        out.push(toTypedValue(value.resource));
        continue;
      }
      if (value.reference) ref = value.reference;
      else if (value.type && value.identifier) {
        ref = `${value.type}?identifier=${value.identifier.system}|${value.identifier.value}`;
      }
    }
    if (ref?.includes('?')) {
      const [resourceType] = ref.split('?');
      out.push({ type: resourceType, value: { resourceType } });
    } else if (ref?.includes('/')) {
      const [resourceType, id] = ref.split('/');
      out.push({ type: resourceType, value: { resourceType, id } });
    }
  }
  return out;
}

function compileFunction(atom: FunctionAtom): Step {
  const args = atom.args;
  switch (atom.name) {
    case 'where': {
      if (args.length !== 1) break;
      const criteria = compileAtom(args[0]);
      return (input) => input.filter((e) => toJsBoolean(criteria([e])));
    }
    case 'exists': {
      if (args.length === 0) return (input) => bool(input.length > 0 && input.every((e) => !isEmptyValue(e.value)));
      if (args.length !== 1) break;
      const criteria = compileAtom(args[0]);
      return (input) => bool(input.some((e) => toJsBoolean(criteria([e]))));
    }
    case 'empty':
      if (args.length !== 0) break;
      return (input) => bool(input.length === 0 || input.every((e) => isEmptyValue(e.value)));
    case 'ofType': {
      if (args.length !== 1) break;
      const type = typeName(args[0]);
      return (input) => input.filter((e) => e.type === type);
    }
    case 'as':
      if (args.length !== 1) break;
      return asType(typeName(args[0]));
    case 'resolve':
      if (args.length !== 0) break;
      return resolveRefs;
    case 'first':
      if (args.length !== 0) break;
      return (input) => input.slice(0, 1);
    case 'extension': {
      if (args.length !== 1) break;
      const url = literalString(args[0]);
      // @medplum/core looks only at the first input item and returns its first matching extension.
      return (input) => {
        const ext = input[0]?.value ? getExtension(input[0].value, url) : undefined;
        return ext ? [{ type: 'Extension', value: ext }] : [];
      };
    }
  }
  throw new Unsupported(`function ${atom.name}()`);
}

/**
 * `x as T` and `x.as(T)`: the one item of x when it is a T (or a subtype); empty otherwise. More
 * than one item is an error (@medplum/core 5, and FHIRPath N1 §6.3.4): where a search parameter
 * means "those of type T" among several, it says `ofType(T)`.
 */
function asType(type: string): Step {
  return (input) => {
    const item = singleton(input);
    return item && fhirPathIs(item, type) ? [item] : [];
  };
}

function compileAtom(atom: Atom): Step {
  if (atom instanceof SymbolAtom) {
    if (atom.name === '$this') return (input) => input;
    if (atom.name.startsWith('%') || atom.name.startsWith('$') || hasInheritedName(atom.name)) {
      throw new Unsupported(`variable ${atom.name}`);
    }
    return propertyStep(atom.name);
  }
  if (atom instanceof DotAtom) {
    const left = compileAtom(atom.left);
    const right = compileAtom(atom.right);
    return (input) => right(left(input));
  }
  if (atom instanceof FunctionAtom) return compileFunction(atom);
  if (atom instanceof AsAtom) {
    const left = compileAtom(atom.left);
    const as = asType(typeName(atom.right));
    return (input) => as(left(input));
  }
  if (atom instanceof UnionAtom) {
    const left = compileAtom(atom.left);
    const right = compileAtom(atom.right);
    return (input) => distinctValues([...left(input), ...right(input)]);
  }
  if (atom instanceof IsAtom) {
    const left = compileAtom(atom.left);
    const type = typeName(atom.right);
    return (input) => {
      const l = left(input);
      return l.length === 1 ? bool(fhirPathIs(l[0], type)) : [];
    };
  }
  if (atom instanceof EqualsAtom || atom instanceof NotEqualsAtom) {
    const negate = atom instanceof NotEqualsAtom;
    const left = compileAtom(atom.left);
    const right = compileAtom(atom.right);
    return (input) => {
      const x = left(input);
      const y = right(input);
      if (x.length === 0 || y.length === 0) return [];
      if (x.length !== y.length) return bool(negate);
      const same = x.every((v, i) => equal(v, y[i]));
      return bool(negate ? !same : same);
    };
  }
  if (atom instanceof AndAtom || atom instanceof OrAtom) {
    const isAnd = atom instanceof AndAtom;
    const left = compileAtom(atom.left);
    const right = compileAtom(atom.right);
    return (input) => {
      const l = booleanSingleton(left(input))?.value;
      const r = booleanSingleton(right(input))?.value;
      if (isAnd) {
        if (l === true && r === true) return bool(true);
        if (l === false || r === false) return bool(false);
        return [];
      }
      if (l === false && r === false) return bool(false);
      if (l || r) return bool(true);
      return [];
    };
  }
  if (atom instanceof LiteralAtom) {
    const value = atom.value;
    return () => [value];
  }
  if (atom instanceof IndexerAtom) {
    const left = compileAtom(atom.left);
    if (!(atom.expr instanceof LiteralAtom) || !Number.isInteger(atom.expr.value.value)) {
      throw new Unsupported('computed index');
    }
    const index = atom.expr.value.value as number;
    return (input) => {
      const l = left(input);
      return index in l ? [l[index]] : [];
    };
  }
  if (atom instanceof EmptySetAtom) return () => [];
  throw new Unsupported(atom.constructor.name);
}

/** As evalFhirPathTyped's last step: primitives that carried extensions come back unwrapped. */
function unwrapPrimitives(values: TypedValue[]): TypedValue[] {
  for (let i = 0; i < values.length; i++) {
    const v = values[i].value;
    if (typeof v === 'object' && (v instanceof String || v instanceof Number || v instanceof Boolean)) {
      values[i] = { type: values[i].type, value: v.valueOf() };
    }
  }
  return values;
}

/**
 * Compile one FHIRPath expression. Never throws for an expression @medplum/core can parse:
 * shapes it cannot compile run on @medplum/core's evaluator (`compiled: false`).
 */
export function compileExpression(expression: string): CompiledExpression {
  const ast = parseFhirPath(expression);
  try {
    const step = compileAtom(ast.child);
    return {
      expression,
      compiled: true,
      evaluate: (root) => unwrapPrimitives(step([root])),
    };
  } catch (err) {
    if (!(err instanceof Unsupported)) throw err;
    return { expression, compiled: false, evaluate: (root) => evalFhirPathTyped(ast, [root]) };
  }
}
