/**
 * A small SQL builder for search: every value goes through param() as $n, never into the text;
 * alias() names the nested aliases of a query apart.
 */
export class SqlBuilder {
  readonly values: unknown[] = [];
  private aliases = 0;
  param(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
  alias(stem: string): string {
    return `${stem}${++this.aliases}`;
  }
}

/**
 * `alias.res_id [NOT] IN (SELECT x.res_id FROM <table> x WHERE <rows>)`: a match in one index table,
 * kept in its parts so that a search anchored on a reference can narrow it to the reference's links
 * (nestUnderReference in ./anchor.ts). It renders as its SQL wherever it is written into a template.
 */
export class IndexMatch {
  readonly kind = 'index';
  readonly alias: string;
  readonly table: string;
  /** The condition on the index rows (over `x`), the owner's rows only when the search is a user's. */
  readonly rows: string;
  readonly negate: boolean;
  constructor(alias: string, table: string, rows: string, negate: boolean) {
    this.alias = alias;
    this.table = table;
    this.rows = rows;
    this.negate = negate;
  }
  toString(): string {
    return `${this.alias}.res_id ${this.negate ? 'NOT IN' : 'IN'} (SELECT x.res_id FROM ${this.table} x WHERE ${this.rows})`;
  }
}

/**
 * `alias.res_id [NOT] IN (SELECT l.src_resource_id FROM hfj_res_link l WHERE l.src_path = ANY(<paths>) ...)`:
 * the resources whose links through some paths point at some targets, kept in its parts so that a
 * search can be anchored on those links (nestUnderReference in ./anchor.ts).
 */
export class LinkMatch {
  readonly kind = 'links';
  readonly alias: string;
  /** The placeholder of the paths array. */
  readonly paths: string;
  /** The owner's links only (over `l`), or empty. */
  readonly own: string;
  /** The condition on the links' targets (over `l`). */
  readonly targets: string;
  readonly negate: boolean;
  constructor(alias: string, paths: string, own: string, targets: string, negate: boolean) {
    this.alias = alias;
    this.paths = paths;
    this.own = own;
    this.targets = targets;
    this.negate = negate;
  }
  /** The subquery of the links' sources. */
  links(): string {
    const own = this.own ? ` AND ${this.own}` : '';
    return `(SELECT l.src_resource_id FROM hfj_res_link l WHERE l.src_path = ANY(${this.paths})${own} AND ${this.targets})`;
  }
  toString(): string {
    return `${this.alias}.res_id ${this.negate ? 'NOT IN' : 'IN'} ${this.links()}`;
  }
}

/** A search condition: SQL text, or a node that keeps the parts a search plan looks at. */
export type Condition = string | IndexMatch | LinkMatch;
