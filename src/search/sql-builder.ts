/**
 * A small SQL builder for search: every value goes through param() as $n, never into the text.
 */
export class SqlBuilder {
  readonly values: unknown[] = [];
  param(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}
