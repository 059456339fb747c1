/** The directory system a connect names (trb_system), as connecting to it needs it. */
import type pg from 'pg';
import * as statements from './sql.ts';

export interface DirectorySystem {
  id: string;
  name: string;
  resource_url: string;
  vendor: string | null;
}

/** The directory system of an id; undefined when there is none (or the id cannot be one). */
export async function systemById(pool: pg.Pool, id: string): Promise<DirectorySystem | undefined> {
  if (!/^[A-Za-z0-9-.]{1,64}$/.test(id)) return undefined;
  const { rows } = await pool.query<DirectorySystem>(statements.systemById(id));
  return rows[0];
}
