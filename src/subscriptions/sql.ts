/**
 * The fixed SQL of subscriptions: the registry (trb_subscription), the outbox of notifications
 * (trb_subscription_outbox) and the registry's version (migration 0026).
 */
import { bulkInsert, prepared, type Sql } from '../storage/sql.ts';

export type { Sql };
import type { Interaction, RegistryStatus } from './definition.ts';

export interface RegistryRow {
  resId: string;
  partitionId: number;
  ownerId: string | null;
  id: string;
  version: number;
  wanted: RegistryStatus;
  hash: string;
  problem: string | null;
  resourceType: string | null;
  criteria: string | null;
  topic: string | null;
  heartbeatSeconds: number | null;
  interactions: Interaction[];
  endsAt: Date | null;
}

/**
 * Subscriptions written: their registry rows made or brought up to date. A subscription asked to
 * be active stays active when what decides matching and delivery is unchanged (the dispatcher's
 * own write of `active`, or a client touching something else); otherwise it is requested again
 * (and the dispatcher activates it). off and error are taken as written.
 */
export function upsertRegistry(rows: RegistryRow[]): Sql {
  const col = <T>(f: (r: RegistryRow) => T) => rows.map(f);
  return {
    text: /* SQL */ `INSERT INTO trb_subscription AS s (res_id, partition_id, owner_id, fhir_id, res_ver, status, def_hash, problem, resource_type, criteria, topic, heartbeat_seconds, interactions, ends_at)
      SELECT r, p, o, f, v, st, h, pr, rt, c, t, hb, string_to_array(i, ','), e
      FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int[], $13::text[], $14::timestamptz[])
        AS u(r, p, o, f, v, st, h, pr, rt, c, t, hb, i, e)
      ON CONFLICT (res_id) DO UPDATE SET
        res_ver = EXCLUDED.res_ver, def_hash = EXCLUDED.def_hash, problem = EXCLUDED.problem, resource_type = EXCLUDED.resource_type,
        criteria = EXCLUDED.criteria, topic = EXCLUDED.topic, heartbeat_seconds = EXCLUDED.heartbeat_seconds,
        interactions = EXCLUDED.interactions, ends_at = EXCLUDED.ends_at, updated_at = now(),
        status = CASE WHEN EXCLUDED.status <> 'requested' THEN EXCLUDED.status
          WHEN s.status = 'active' AND s.def_hash = EXCLUDED.def_hash THEN 'active' ELSE 'requested' END,
        error = CASE WHEN EXCLUDED.status = 'requested' AND NOT (s.status = 'active' AND s.def_hash = EXCLUDED.def_hash) THEN NULL ELSE s.error END,
        failures = CASE WHEN EXCLUDED.status = 'requested' AND NOT (s.status = 'active' AND s.def_hash = EXCLUDED.def_hash) THEN 0 ELSE s.failures END,
        next_at = CASE WHEN EXCLUDED.status = 'requested' AND NOT (s.status = 'active' AND s.def_hash = EXCLUDED.def_hash) THEN now() ELSE s.next_at END`,
    values: [
      col((r) => r.resId),
      col((r) => r.partitionId),
      col((r) => r.ownerId),
      col((r) => r.id),
      col((r) => r.version),
      col((r) => r.wanted),
      col((r) => r.hash),
      col((r) => r.problem),
      col((r) => r.resourceType),
      col((r) => r.criteria),
      col((r) => r.topic),
      col((r) => r.heartbeatSeconds),
      // One comma-separated list per row (unnest flattens arrays of arrays).
      col((r) => r.interactions.join(',')),
      col((r) => r.endsAt),
    ],
  };
}

/** Subscriptions deleted: out of the registry, and what they had still to send. */
export function removeFromRegistry(resIds: string[]): Sql[] {
  return [
    { text: /* SQL */ `DELETE FROM trb_subscription WHERE res_id = ANY($1::bigint[])`, values: [resIds] },
    { text: /* SQL */ `DELETE FROM trb_subscription_outbox WHERE sub_res_id = ANY($1::bigint[])`, values: [resIds] },
  ];
}

/** The registry changed: every process reloads it (the row's trigger NOTIFYs, on commit). */
export function bumpRegistry(): Sql {
  return { text: /* SQL */ `UPDATE trb_subscription_state SET version = version + 1`, values: [] };
}

export function registryVersion(): Sql {
  return prepared({ text: /* SQL */ `SELECT version FROM trb_subscription_state`, values: [] });
}

export interface ActiveRow {
  version: string;
  /** null in the one row of a registry with no active subscription. */
  res_id: string | null;
  partition_id: number;
  owner_id: string | null;
  fhir_id: string;
  criteria: string;
  interactions: Interaction[];
  ends_at: Date | null;
}

/** The active subscriptions and the registry's version, in one snapshot (at least one row: the version's). */
export function activeSubscriptions(): Sql {
  return prepared({
    text: /* SQL */ `SELECT v.version, s.res_id, s.partition_id, s.owner_id, s.fhir_id, s.criteria, s.interactions, s.ends_at
      FROM trb_subscription_state v LEFT JOIN trb_subscription s ON s.status = 'active' AND s.criteria IS NOT NULL AND (s.ends_at IS NULL OR s.ends_at > now())`,
    values: [],
  });
}

export interface OutboxInsert {
  subResId: string;
  partitionId: number;
  resId: string;
  type: string;
  id: string;
  version: number;
  verify: boolean;
  /** A delete: the version is the tombstone. */
  deleted: boolean;
}

export function insertOutbox(rows: OutboxInsert[]): Sql {
  return bulkInsert(
    'trb_subscription_outbox',
    [
      ['sub_res_id', 'bigint'],
      ['partition_id', 'int'],
      ['res_id', 'bigint'],
      ['res_type', 'text'],
      ['fhir_id', 'text'],
      ['res_ver', 'bigint'],
      ['verify', 'bool'],
      ['deleted', 'bool'],
    ],
    [
      rows.map((r) => r.subResId),
      rows.map((r) => r.partitionId),
      rows.map((r) => r.resId),
      rows.map((r) => r.type),
      rows.map((r) => r.id),
      rows.map((r) => r.version),
      rows.map((r) => r.verify),
      rows.map((r) => r.deleted),
    ],
  );
}

/** A subscription the dispatcher holds (its lease), with what serving it needs. */
export interface ClaimedRow {
  res_id: string;
  partition_id: number;
  owner_id: string | null;
  fhir_id: string;
  status: 'requested' | 'active';
  def_hash: string;
  problem: string | null;
  topic: string | null;
  criteria: string | null;
  events: string;
  failures: number;
  heartbeat_seconds: number | null;
  heartbeat_due: boolean;
  /** Past its Subscription.end: to turn off. */
  ended: boolean;
}

/**
 * Up to `limit` subscriptions with work (to activate, notifications to send, a heartbeat due),
 * not in backoff, not held by a dispatcher, not among `held` (this process's own) nor of an app in
 * `fullPartitions` (holding its share of this process's slots): leased for `leaseSeconds`, which
 * no other dispatcher takes them within.
 */
export function claim(limit: number, held: string[], leaseSeconds: number, fullPartitions: number[]): Sql {
  return prepared({
    // From the few rows that have work (pending notifications through their partial index, the
    // requested, the heartbeats due), not a probe of every active subscription's outbox.
    text: /* SQL */ `WITH candidates AS (
          SELECT DISTINCT o.sub_res_id AS res_id FROM trb_subscription_outbox o WHERE o.sent_at IS NULL
          UNION SELECT r.res_id FROM trb_subscription r WHERE r.status = 'requested'
          UNION SELECT e.res_id FROM trb_subscription e WHERE e.ends_at <= now() AND e.status IN ('requested', 'active')
          UNION SELECT h.res_id FROM trb_subscription h
            WHERE h.status = 'active' AND h.heartbeat_seconds IS NOT NULL AND coalesce(h.last_sent, h.updated_at) < now() - make_interval(secs => h.heartbeat_seconds)),
        due AS (
          SELECT s.res_id FROM candidates c JOIN trb_subscription s ON s.res_id = c.res_id
          WHERE s.status IN ('requested', 'active') AND s.next_at <= now() AND (s.lease_until IS NULL OR s.lease_until < now())
            AND NOT s.res_id = ANY($2::bigint[]) AND NOT s.partition_id = ANY($4::int[])
          ORDER BY s.next_at
          LIMIT $1
          FOR UPDATE OF s SKIP LOCKED)
      UPDATE trb_subscription s SET lease_until = now() + make_interval(secs => $3)
      FROM due WHERE s.res_id = due.res_id
      RETURNING s.res_id, s.partition_id, s.owner_id, s.fhir_id, s.status, s.def_hash, s.problem, s.topic, s.criteria, s.events, s.failures,
        (s.ends_at <= now()) IS TRUE AS ended,
        s.heartbeat_seconds, (s.heartbeat_seconds IS NOT NULL AND coalesce(s.last_sent, s.updated_at) < now() - make_interval(secs => s.heartbeat_seconds)) AS heartbeat_due`,
    values: [limit, held, leaseSeconds, fullPartitions],
  });
}

export function release(resId: string): Sql {
  return prepared({ text: /* SQL */ `UPDATE trb_subscription SET lease_until = NULL WHERE res_id = $1`, values: [resId] });
}

export interface PendingRow {
  id: string;
  res_id: string;
  res_type: string;
  fhir_id: string;
  res_ver: string;
  verify: boolean;
  deleted: boolean;
  event_number: string | null;
  created_at: Date;
}

/**
 * A subscription's next notifications to send, oldest first, those not yet numbered given the
 * subscription's next event numbers (in one statement: the lease makes the dispatcher the only one
 * numbering them). One left to a SQL check is numbered only once it passed (numberEvent), so that
 * the numbers have no gaps.
 */
export function pending(subResId: string, limit: number): Sql {
  return prepared({
    text: /* SQL */ `WITH p AS (
        SELECT id, verify, event_number FROM trb_subscription_outbox WHERE sub_res_id = $1 AND sent_at IS NULL ORDER BY id LIMIT $2),
      u AS (SELECT id, row_number() OVER (ORDER BY id) AS k FROM p WHERE event_number IS NULL AND NOT verify),
      bump AS (UPDATE trb_subscription SET events = events + (SELECT count(*) FROM u) WHERE res_id = $1 AND EXISTS (SELECT 1 FROM u)
        RETURNING events - (SELECT count(*) FROM u) AS base),
      numbered AS (UPDATE trb_subscription_outbox o SET event_number = bump.base + u.k FROM u, bump WHERE o.id = u.id RETURNING o.id, o.event_number)
      SELECT o.id, o.res_id, o.res_type, o.fhir_id, o.res_ver, o.verify, o.deleted, coalesce(n.event_number, o.event_number) AS event_number, o.created_at
      FROM trb_subscription_outbox o JOIN p ON p.id = o.id LEFT JOIN numbered n ON n.id = o.id ORDER BY o.id`,
    values: [subResId, limit],
  });
}

/** A notification that does not match after all (its SQL check): dropped, never numbered. */
export function dropNotification(id: string): Sql {
  return prepared({ text: /* SQL */ `DELETE FROM trb_subscription_outbox WHERE id = $1`, values: [id] });
}

/** The subscription's next event number, given to a notification at its first attempt (kept for its retries). */
export function numberEvent(subResId: string, id: string): Sql {
  return prepared({
    text: /* SQL */ `WITH n AS (UPDATE trb_subscription SET events = events + 1 WHERE res_id = $1 RETURNING events)
      UPDATE trb_subscription_outbox o SET event_number = n.events FROM n WHERE o.id = $2 RETURNING o.event_number`,
    values: [subResId, id],
  });
}

/**
 * A notification the receiver took; the lease renewed (one delivery takes far less than a lease),
 * or given back with `release` (it was the last to send: one statement fewer per notification).
 */
export function sent(subResId: string, id: string | null, leaseSeconds: number, release: boolean): Sql {
  return prepared({
    text: /* SQL */ `WITH o AS (UPDATE trb_subscription_outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = $2::bigint RETURNING 1)
      UPDATE trb_subscription SET failures = 0, last_sent = now(),
        lease_until = CASE WHEN $4::boolean THEN NULL ELSE now() + make_interval(secs => $3) END
      WHERE res_id = $1`,
    values: [subResId, id, leaseSeconds, release],
  });
}

/** A failed attempt: the subscription waits `delayMs` before its next (its lease given back); its failures in a row, counted. */
export function failed(subResId: string, id: string | null, delayMs: number): Sql {
  return prepared({
    text: /* SQL */ `WITH o AS (UPDATE trb_subscription_outbox SET attempts = attempts + 1 WHERE id = $2::bigint RETURNING 1)
      UPDATE trb_subscription SET failures = failures + 1, next_at = now() + make_interval(secs => $3::double precision / 1000), lease_until = NULL
      WHERE res_id = $1
      RETURNING failures`,
    values: [subResId, id, delayMs],
  });
}

/**
 * The dispatcher's change of a subscription's status, when what it was claimed for is still what
 * it is (the same definition): active after activation, error with the reason.
 */
export function setRegistryStatus(resId: string, hash: string, status: 'active' | 'error' | 'off', error: string | null): Sql {
  return prepared({
    text: /* SQL */ `UPDATE trb_subscription SET status = $3, error = $4, failures = 0, next_at = now(), last_sent = CASE WHEN $3 = 'active' THEN now() ELSE last_sent END
      WHERE res_id = $1 AND def_hash = $2 AND status IN ('requested', 'active') RETURNING res_id`,
    values: [resId, hash, status, error],
  });
}

export interface StatusRow {
  res_id: string;
  fhir_id: string;
  status: string;
  error: string | null;
  events: string;
  topic: string | null;
  failures: number;
}

/** Subscriptions' states, for $status and $events: those of `ids` (all the owner's, null), at most `limit`. */
export function statusOf(partitionId: number, ownerId: string | null, ids: string[] | null, limit = 1): Sql {
  return prepared({
    text: /* SQL */ `SELECT res_id, fhir_id, status, error, events, topic, failures FROM trb_subscription
      WHERE partition_id = $1 AND (owner_id = $2 OR $2::bigint IS NULL) AND ($3::text[] IS NULL OR fhir_id = ANY($3::text[]))
      ORDER BY res_id LIMIT $4`,
    values: [partitionId, ownerId, ids, limit],
  });
}

/** A subscription's numbered events in [since, until], oldest first, at most `limit`. */
export function events(subResId: string, since: number, until: number, limit: number): Sql {
  return prepared({
    text: /* SQL */ `SELECT id, res_id, res_type, fhir_id, res_ver, verify, deleted, event_number, created_at FROM trb_subscription_outbox
      WHERE sub_res_id = $1 AND event_number BETWEEN $2 AND $3 ORDER BY event_number LIMIT $4`,
    values: [subResId, since, until, limit],
  });
}

/** Sent notifications older than `days` days: gone ($events reaches back that far). */
export function purgeSent(days: number): Sql {
  return prepared({
    text: /* SQL */ `DELETE FROM trb_subscription_outbox WHERE sent_at < now() - make_interval(days => $1)`,
    values: [days],
  });
}
