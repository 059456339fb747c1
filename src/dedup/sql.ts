/** The fixed SQL of de-duplication (migration 0029). */
import { prepared, type Sql } from '../storage/sql.ts';

/** What the person's records are now, for the check that nothing changed: the newest change and the count. */
export function recordsState(partitionId: number, ownerId: string, types: string[]): Sql {
  return prepared({
    text: /* SQL */ `SELECT max(res_updated) AS changed_through, count(*) FILTER (WHERE res_deleted_at IS NULL)::int AS resources
      FROM hfj_resource WHERE partition_id = $1 AND owner_id = $2 AND res_type = ANY($3::text[])`,
    values: [partitionId, ownerId, types],
  });
}

export function stateOf(ownerId: string): Sql {
  return prepared({ text: /* SQL */ `SELECT changed_through, resources, rules FROM trb_dedup_state WHERE owner_id = $1`, values: [ownerId] });
}

/** The person's current records of the types de-duplication compares, with their source. */
export function records(partitionId: number, ownerId: string, types: string[]): Sql {
  return prepared({
    text: /* SQL */ `SELECT r.res_id, r.res_type, r.fhir_id, v.res_text_vc, v.source_uri
      FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver
      WHERE r.partition_id = $1 AND r.owner_id = $2 AND r.res_type = ANY($3::text[]) AND r.res_deleted_at IS NULL`,
    values: [partitionId, ownerId, types],
  });
}

/** Takes the person's de-duplication for this transaction, or answers false when another run has it. */
export function lockPerson(ownerId: string): Sql {
  return { text: /* SQL */ `SELECT pg_try_advisory_xact_lock(hashtextextended('tributary:dedup:' || $1, 0)) AS locked`, values: [ownerId] };
}

export function decisions(ownerId: string): Sql {
  return prepared({
    text: /* SQL */ `SELECT a_res_id, b_res_id, status FROM trb_dedup_link WHERE owner_id = $1 AND status <> 'auto'`,
    values: [ownerId],
  });
}

/** The rules' links now: those no longer found go, new ones come, found ones take the rule and score of now; decisions stay. */
export function replaceAutoLinks(
  partitionId: number,
  ownerId: string,
  links: { type: string; a: string; b: string; rule: string; score: number }[],
): Sql[] {
  return [
    {
      text: /* SQL */ `DELETE FROM trb_dedup_link l WHERE l.owner_id = $1 AND l.status = 'auto'
        AND NOT EXISTS (SELECT 1 FROM unnest($2::bigint[], $3::bigint[]) AS n(a, b) WHERE n.a = l.a_res_id AND n.b = l.b_res_id)`,
      values: [ownerId, links.map((l) => l.a), links.map((l) => l.b)],
    },
    {
      text: /* SQL */ `INSERT INTO trb_dedup_link (owner_id, partition_id, res_type, a_res_id, b_res_id, rule, score)
        SELECT $1, $2, t, a, b, r, s FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::real[]) AS n(t, a, b, r, s)
        ON CONFLICT (owner_id, a_res_id, b_res_id) DO UPDATE SET rule = EXCLUDED.rule, score = EXCLUDED.score
          WHERE trb_dedup_link.status = 'auto'`,
      values: [
        ownerId,
        partitionId,
        links.map((l) => l.type),
        links.map((l) => l.a),
        links.map((l) => l.b),
        links.map((l) => l.rule),
        links.map((l) => l.score),
      ],
    },
  ];
}

export function saveState(partitionId: number, ownerId: string, changedThrough: Date | null, resources: number, rules: string): Sql {
  return {
    text: /* SQL */ `INSERT INTO trb_dedup_state (owner_id, partition_id, changed_through, resources, rules, ran_at) VALUES ($1, $2, $3, $4, $5, now())
      ON CONFLICT (owner_id) DO UPDATE SET changed_through = EXCLUDED.changed_through, resources = EXCLUDED.resources, rules = EXCLUDED.rules, ran_at = now()`,
    values: [ownerId, partitionId, changedThrough, resources, rules],
  };
}

/** A connection's app and user: whose records a sync of it brought. */
export function connectionOwner(connectionId: string): Sql {
  return prepared({ text: /* SQL */ `SELECT app_id, user_id::text FROM trb_connection WHERE id = $1`, values: [connectionId] });
}

export interface LinkRow {
  a_res_id: string;
  b_res_id: string;
  res_type: string;
  rule: string;
  score: number;
  status: 'auto' | 'confirmed' | 'rejected';
  made_at: Date;
  decided_at: Date | null;
  owner_id: string;
  a_id: string;
  b_id: string;
  a_source: string | null;
  b_source: string | null;
}

const LINK_COLUMNS = /* SQL */ `l.a_res_id, l.b_res_id, l.res_type, l.rule, l.score, l.status, l.made_at, l.decided_at, l.owner_id,
  ra.fhir_id AS a_id, rb.fhir_id AS b_id, va.source_uri AS a_source, vb.source_uri AS b_source`;
const LINK_FROM = /* SQL */ `trb_dedup_link l
  JOIN hfj_resource ra ON ra.res_id = l.a_res_id AND ra.owner_id = l.owner_id JOIN hfj_res_ver va ON va.res_id = ra.res_id AND va.owner_id = ra.owner_id AND va.res_ver = ra.res_ver
  JOIN hfj_resource rb ON rb.res_id = l.b_res_id AND rb.owner_id = l.owner_id JOIN hfj_res_ver vb ON vb.res_id = rb.res_id AND vb.owner_id = rb.owner_id AND vb.res_ver = rb.res_ver`;

/** The links of a person (or, owner null, of every user of the app), of both records still there, at most `limit`. */
export function linkRows(partitionId: number, ownerId: string | null, limit: number, pair?: [string, string]): Sql {
  return prepared({
    text: /* SQL */ `SELECT ${LINK_COLUMNS} FROM ${LINK_FROM}
      WHERE l.partition_id = $1 AND ($2::bigint IS NULL OR l.owner_id = $2) AND ra.res_deleted_at IS NULL AND rb.res_deleted_at IS NULL
        AND ($4::bigint IS NULL OR (l.a_res_id = $4 AND l.b_res_id = $5))
      ORDER BY l.owner_id, l.res_type, l.a_res_id, l.b_res_id LIMIT $3`,
    values: [partitionId, ownerId, limit, pair?.[0] ?? null, pair?.[1] ?? null],
  });
}

/** A person's (or app's) decision on a link: confirmed or rejected, and when. */
export function decide(partitionId: number, ownerId: string | null, a: string, b: string, status: 'confirmed' | 'rejected'): Sql {
  return {
    text: /* SQL */ `UPDATE trb_dedup_link SET status = $5, decided_at = now()
      WHERE partition_id = $1 AND ($2::bigint IS NULL OR owner_id = $2) AND a_res_id = $3 AND b_res_id = $4 RETURNING 1`,
    values: [partitionId, ownerId, a, b, status],
  };
}

/** The people whose links were made with other rules than `rules` (their hash). */
export function peopleWithOtherRules(rules: string): Sql {
  return prepared({
    text: /* SQL */ `SELECT owner_id::text, partition_id FROM trb_dedup_state WHERE rules <> $1 ORDER BY owner_id`,
    values: [rules],
  });
}
