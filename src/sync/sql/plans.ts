/** Fixed SQL statements of what the sync learned per system (trb_sync_query_plan: src/sync/plan.ts). */
import type { Sql } from '../../storage/sql.ts';

/** The system's plans learned in the last `days`. */
export function learnedPlans(systemId: string, days: number): Sql {
  return {
    text: /* SQL */ `SELECT res_type, working, refused, page_size, since_prefix, since_honoured, full_count, learned_at FROM trb_sync_query_plan
     WHERE system_id = $1 AND learned_at > now() - make_interval(days => $2)`,
    values: [systemId, days],
  };
}

/** A type's plan at a system, replacing what was known (`learnedAt` null: now). */
export function saveLearnedPlan(
  systemId: string,
  type: string,
  working: string[],
  refused: string,
  pageSize: number | null,
  sincePrefix: string | null,
  sinceHonoured: boolean | null,
  fullCount: number | null,
  learnedAt: Date | null,
): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_sync_query_plan (system_id, res_type, working, refused, page_size, since_prefix, since_honoured, full_count, learned_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()))
     ON CONFLICT (system_id, res_type) DO UPDATE SET working = EXCLUDED.working, refused = EXCLUDED.refused, page_size = EXCLUDED.page_size,
       since_prefix = EXCLUDED.since_prefix, since_honoured = EXCLUDED.since_honoured, full_count = EXCLUDED.full_count, learned_at = EXCLUDED.learned_at`,
    values: [systemId, type, working, refused, pageSize, sincePrefix, sinceHonoured, fullCount, learnedAt],
  };
}

export function forgetLearnedPlan(systemId: string, type: string): Sql {
  return { text: /* SQL */ 'DELETE FROM trb_sync_query_plan WHERE system_id = $1 AND res_type = $2', values: [systemId, type] };
}
