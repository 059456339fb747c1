/**
 * Fixed SQL statements of the FHIR core (outside the resource store's own, src/storage/sql.ts), as
 * small functions returning { text, values }.
 */
import type { Sql } from '../storage/sql.ts';
import { ownRecordsKeySql } from '../storage/distribution.ts';

/** The live SearchParameters the built-in app stored through the API (partition 0, app level), oldest first. */
export function storedSearchParameters(): Sql {
  return {
    text: /* SQL */ `SELECT v.res_text_vc AS json FROM hfj_resource r
    JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver
    WHERE r.res_type = 'SearchParameter' AND r.res_deleted_at IS NULL AND r.partition_id = 0 AND r.owner_id = ${ownRecordsKeySql('0')} ORDER BY r.res_id`,
    values: [],
  };
}

/**
 * Part of the statement that writes a searchable SearchParameter: every process adds it once the
 * write commits (plugins/core.ts; migration 0031). A data-modifying statement, so that it runs
 * among the write's others (src/storage/sql.ts combine) and its notification commits with them.
 */
export const notifySearchParameters = (): Sql => ({
  text: /* SQL */ `INSERT INTO trb_search_parameter_change (one, changed_at) VALUES (true, now())
    ON CONFLICT (one) DO UPDATE SET changed_at = now() RETURNING pg_notify('${SEARCH_PARAMETERS_CHANNEL}', 'stored') IS NULL`,
  values: [],
});
export const SEARCH_PARAMETERS_CHANNEL = 'trb_search_parameters';
