/** A user's Patient in FHIR storage, for the SMART patient context of their sign-in. */
import type pg from 'pg';
import type { Sql } from './sql.ts';

const firstPatient = (partitionId: number, ownerId: string): Sql => ({
  text: /* SQL */ `SELECT fhir_id FROM hfj_resource WHERE partition_id = $1 AND owner_id = $2 AND res_type = 'Patient' AND res_deleted_at IS NULL ORDER BY res_id LIMIT 1`,
  values: [partitionId, ownerId],
});

/** The user's Patient (the first stored) in the app's partition; undefined when none. */
export async function patientOf(pool: pg.Pool, appId: number, userId: string): Promise<string | undefined> {
  const { rows } = await pool.query<{ fhir_id: string }>(firstPatient(appId, userId));
  return rows[0]?.fhir_id;
}
