/**
 * The backport's operations on a subscription: `$status` (its SubscriptionStatus, query-status)
 * and `$events` (its past events by number, query-event, as a notification would carry them),
 * for the subscription's owner (the user; the app for any of its users').
 * See: https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/OperationDefinition-backport-subscription-status.html,
 *      https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/OperationDefinition-backport-subscription-events.html
 */
import type pg from 'pg';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { badRequest, notFound } from '../fhir/errors.ts';
import type { Scope } from '../fhir/ports.ts';
import { checkId } from '../fhir/service.ts';
import type { Repository } from '../storage/repository.ts';
import { channelOf, type SubscriptionLike } from './definition.ts';
import { notificationBundle, type NotificationEvent } from './notification.ts';
import * as statements from './sql.ts';

export const STATUS_DEFINITION = 'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status';
export const EVENTS_DEFINITION = 'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events';

/** Subscription/$status answers at most this many subscriptions. */
export const MAX_STATUSES = 1000;
/** $events answers at most this many events at once (eventsSinceNumber pages on). */
export const MAX_EVENTS = 100;

export interface OperationDeps {
  pool: pg.Pool;
  repo: Repository;
}

async function registryRow(d: OperationDeps, scope: Scope, id: string): Promise<statements.StatusRow> {
  checkId(id);
  const row = (await d.pool.query<statements.StatusRow>(statements.statusOf(scope.partitionId, scope.ownerId, [id]))).rows[0];
  if (!row) throw notFound(`Subscription/${id} is not known.`);
  return row;
}

/** `Subscription/[id]/$status`: a searchset Bundle of its SubscriptionStatus. */
export async function subscriptionStatusOf(d: OperationDeps, scope: Scope, base: string, id: string): Promise<Bundle> {
  const row = await registryRow(d, scope, id);
  return notificationBundle(
    {
      base,
      subscriptionId: id,
      topic: row.topic,
      status: row.status,
      type: 'query-status',
      eventsSinceStart: row.events,
      error: row.error,
      withFocus: false,
    },
    [],
    'searchset',
  );
}

/**
 * `Subscription/$status`: the status of the owner's subscriptions, those named by `id` (a list), of
 * a `status` when given; at most MAX_STATUSES.
 */
export async function subscriptionStatuses(d: OperationDeps, scope: Scope, base: string, q: URLSearchParams): Promise<Bundle> {
  const ids = q
    .getAll('id')
    .flatMap((v) => v.split(','))
    .filter(Boolean);
  for (const id of ids) checkId(id);
  const wanted = q
    .getAll('status')
    .flatMap((v) => v.split(','))
    .filter(Boolean);
  const rows = (
    await d.pool.query<statements.StatusRow>(statements.statusOf(scope.partitionId, scope.ownerId, ids.length ? ids : null, MAX_STATUSES))
  ).rows;
  const entry = rows
    .filter((r) => !wanted.length || wanted.includes(r.status))
    .map(
      (r) =>
        notificationBundle(
          {
            base,
            subscriptionId: r.fhir_id,
            topic: r.topic,
            status: r.status,
            type: 'query-status',
            eventsSinceStart: r.events,
            error: r.error,
            withFocus: false,
          },
          [],
          'searchset',
        ).entry![0],
    );
  return { resourceType: 'Bundle', type: 'searchset', total: entry.length, timestamp: new Date().toISOString(), entry };
}

function number(q: URLSearchParams, name: string, fallback: number): number {
  const v = q.get(name);
  if (v === null || v === '') return fallback;
  if (!/^\d{1,15}$/.test(v)) throw badRequest(`${name} is an event number (a whole number of 1 or more); it is "${v.slice(0, 50)}".`);
  return Number(v);
}

/** `Subscription/[id]/$events`: the events numbered eventsSinceNumber..eventsUntilNumber (the latest MAX_EVENTS without them). */
export async function subscriptionEvents(d: OperationDeps, scope: Scope, base: string, id: string, q: URLSearchParams): Promise<Bundle> {
  const row = await registryRow(d, scope, id);
  const last = Number(row.events);
  const until = Math.min(number(q, 'eventsUntilNumber', last), last);
  const since = number(q, 'eventsSinceNumber', Math.max(1, until - MAX_EVENTS + 1));
  const sub = await d.repo.readCurrent(d.pool, scope, 'Subscription', id);
  let content = q.get('content') ?? undefined;
  if (content === undefined) {
    try {
      const p = channelOf(JSON.parse(sub!.json!) as SubscriptionLike).payload;
      content = p === 'full' ? 'full-resource' : p === 'none' ? 'id-only' : p;
    } catch {
      content = 'id-only';
    }
  }
  if (!['empty', 'id-only', 'full-resource'].includes(content))
    throw badRequest(`content is empty, id-only or full-resource; it is "${content.slice(0, 50)}".`);
  const rows = (await d.pool.query<statements.PendingRow>(statements.events(row.res_id, since, until, MAX_EVENTS))).rows;
  // The versions the events were of, in the scope of the subscription's reader.
  const events: NotificationEvent[] = [];
  for (const r of rows) {
    const version = Number(r.res_ver);
    const stored = content === 'full-resource' && !r.deleted ? await d.repo.readVersion(d.pool, scope, r.res_type, r.fhir_id, version) : undefined;
    events.push({
      deleted: r.deleted,
      number: r.event_number!,
      timestamp: r.created_at,
      type: r.res_type,
      id: r.fhir_id,
      version,
      resource: stored?.json ? (JSON.parse(stored.json) as Resource) : undefined,
    });
  }
  return notificationBundle(
    {
      base,
      subscriptionId: id,
      topic: row.topic,
      status: row.status,
      type: 'query-event',
      eventsSinceStart: row.events,
      error: row.error,
      withFocus: content !== 'empty',
    },
    events,
  );
}
