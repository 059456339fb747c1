/**
 * The statements of re-sealing (src/auth/reseal.ts), over a column of SEALED_COLUMNS: its table,
 * column, key and context are constants of that list, never input, written into the text.
 */
import type { Sql } from '../../storage/sql.ts';

export interface SealedColumnSql {
  table: string;
  column: string;
  key: string;
  context: string;
}

/** Which of these tables' columns the database has. */
export const columnsOf = (tables: string[]): Sql => ({
  text: 'SELECT table_name AS t, column_name AS c FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ANY($1::text[])',
  values: [tables],
});

/** Values of the column not sealed under the key of `prefix`. */
export const countStale = (s: SealedColumnSql, prefix: Buffer): Sql => ({
  text: `SELECT count(*) AS n FROM ${s.table} WHERE ${s.column} IS NOT NULL AND substring(${s.column} FROM 1 FOR ${prefix.length}) <> $1`,
  values: [prefix],
});

/** The next `batch` of such values after key `last` (keyset paging), locked, with their contexts. */
export function staleBatch(s: SealedColumnSql, prefix: Buffer, batch: number, last: unknown): Sql {
  return {
    text: /* SQL */ `SELECT ${s.key} AS k, ${s.context} AS ctx, ${s.column} AS sealed FROM ${s.table}
           WHERE ${s.column} IS NOT NULL AND substring(${s.column} FROM 1 FOR ${prefix.length}) <> $1 ${last === undefined ? '' : `AND ${s.key} > $3`}
           ORDER BY ${s.key} LIMIT $2 FOR UPDATE`,
    values: last === undefined ? [prefix, batch] : [prefix, batch, last],
  };
}

export const reseal = (s: SealedColumnSql, sealed: Buffer, key: unknown): Sql => ({
  text: `UPDATE ${s.table} SET ${s.column} = $1 WHERE ${s.key} = $2`,
  values: [sealed, key],
});
