/** The purge of a connection removed with `purge=true`: the user's records that came from its system. */
import type pg from 'pg';
import { writeResources, type BulkDeps } from '../fhir/bulk.ts';
import { inTransaction } from '../storage/transaction.ts';
import * as statements from './sql.ts';

/** Deletes the user's records that came from a system (their meta.source is its FHIR base); how many. */
export async function purgeFrom(pool: pg.Pool, deps: BulkDeps, appId: number, userId: string, fhirBase: string): Promise<number> {
  return inTransaction(pool, async (c) => {
    const { rows } = await c.query<{ res_type: string; fhir_id: string }>(statements.recordsFrom(appId, userId, fhirBase));
    const gone = rows.map((r) => ({ type: r.res_type, id: r.fhir_id, resource: null }));
    const { written } = await writeResources(deps, c, { partitionId: appId, ownerId: userId }, gone);
    return written;
  });
}
