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
      FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.res_ver = r.res_ver
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

export function linksOf(ownerId: string): Sql {
  return prepared({
    text: /* SQL */ `SELECT res_type, a_res_id, b_res_id, rule, score, status, made_at, decided_at FROM trb_dedup_link WHERE owner_id = $1 ORDER BY res_type, a_res_id, b_res_id`,
    values: [ownerId],
  });
}

/** A connection's app and user: whose records a sync of it brought. */
export function connectionOwner(connectionId: string): Sql {
  return prepared({ text: /* SQL */ `SELECT app_id, user_id::text FROM trb_connection WHERE id = $1`, values: [connectionId] });
}
