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
