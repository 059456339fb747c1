/** Fixed SQL statements of the hourly count of user-management calls (trb_rate). */
import type { Sql } from '../../storage/sql.ts';

/** One more call of the app this hour: the count, and the seconds until the hour ends. */
export function countCall(appId: number): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_rate (app_id, bucket, calls) VALUES ($1, date_trunc('hour', now()), 1)
       ON CONFLICT (app_id, bucket) DO UPDATE SET calls = trb_rate.calls + 1
       RETURNING calls, ceil(extract(epoch FROM date_trunc('hour', now()) + interval '1 hour' - now()))::int AS retry`,
    values: [appId],
  };
}
