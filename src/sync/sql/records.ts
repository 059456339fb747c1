/** Fixed SQL statements of the sync over the user's records (hfj_resource): which are stored, which came from a system. */
import type { Sql } from '../../storage/sql.ts';

/** Of these `Type/id` keys (as two arrays), those in the owner's records, not deleted. */
export function storedOf(partitionId: number, ownerId: string | null, types: string[], ids: string[]): Sql {
  return {
    text: /* SQL */ 'SELECT res_type, fhir_id FROM hfj_resource WHERE partition_id = $1 AND owner_id = $2 AND res_deleted_at IS NULL AND (res_type, fhir_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))',
    values: [partitionId, ownerId, types, ids],
  };
}

/** The ids of the owner's live records of `type` tagged with the source tag `tagSystem|tagCode`. */
export function taggedOfType(partitionId: number, ownerId: string | null, type: string, tagSystem: string, tagCode: string): Sql {
  return {
    text: /* SQL */ `SELECT r.fhir_id FROM hfj_resource r
     WHERE r.partition_id = $1 AND r.owner_id = $2 AND r.res_type = $3 AND r.res_deleted_at IS NULL
       AND EXISTS (SELECT 1 FROM hfj_res_tag rt JOIN hfj_tag_def d ON d.tag_id = rt.tag_id WHERE rt.res_id = r.res_id AND rt.owner_id = r.owner_id AND d.tag_system = $4 AND d.tag_code = $5)`,
    values: [partitionId, ownerId, type, tagSystem, tagCode],
  };
}
