/** `_total`: the number of matches, counted or estimated. See: https://hl7.org/fhir/R4/search.html#total */
import type { Db } from '../storage/repository.ts';
import { countMatches, estimateMatches } from './sql.ts';

/** How many resources `source` matches (`values`: its parameters alone). */
export async function count(db: Db, source: string, values: unknown[]): Promise<number> {
  const { rows } = await db.query<{ n: number }>(countMatches(source, values));
  return rows[0].n;
}

/** `_total=accurate` (a count) or `estimate` (PostgreSQL's estimate of the rows). */
export async function totalFor(db: Db, source: string, values: unknown[], mode: 'accurate' | 'estimate'): Promise<number> {
  if (mode === 'accurate') return count(db, source, values);
  const { rows } = await db.query<{ 'QUERY PLAN': { Plan: { 'Plan Rows': number } }[] }>(estimateMatches(source, values));
  return Math.round(rows[0]['QUERY PLAN'][0].Plan['Plan Rows']);
}
