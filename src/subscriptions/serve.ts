/**
 * Serving one subscription the dispatcher holds: activating it (the backport's handshake first),
 * then sending what its outbox holds, oldest first, one notification at a time, so that it is in
 * order and a failure stops the line (at least once: a notification is marked sent only after the
 * receiver answered 2xx). A failure puts the subscription off (1 s, 2 s, 4 s ...); at the limit it
 * goes to `error` with the reason, written to the Subscription resource. Each notification is
 * signed in the project's webhook format with the app's webhook secrets (src/sync/webhooks.ts).
 * See: https://hl7.org/fhir/R4/subscription.html#2.46.7.1, https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Resource } from '@medplum/fhirtypes';
import type { ResourceIndexer, Scope } from '../fhir/ports.ts';
import type { OutboundFetch } from '../net/outbound.ts';
import type { SearchEngine } from '../search/engine.ts';
import type { Repository } from '../storage/repository.ts';
import { inTransaction } from '../storage/transaction.ts';
import { signature } from '../sync/webhooks.ts';
import { channelOf, splitCriteria, type Channel, type SubscriptionLike } from './definition.ts';
import { notificationBundle, type NotificationEvent, type NotificationType } from './notification.ts';
import type { SubscriptionRegistry } from './registry.ts';
import * as statements from './sql.ts';

export interface ServeDeps {
  pool: pg.Pool;
  repo: Repository;
  indexer: ResourceIndexer;
  search: SearchEngine;
  fetch: OutboundFetch;
  registry: SubscriptionRegistry;
  log: { warn(o: object, msg: string): void };
  /** The FHIR base notifications' references are under. */
  base: string;
  /** Failures in a row before error, and the first backoff (doubling, at most 10 minutes). */
  retry: { limit: number; baseMs: number };
  /** One delivery may take this long. */
  timeoutMs: number;
  leaseSeconds: number;
  /** Stops a drain between notifications (the process is closing). */
  signal: AbortSignal;
  /** The app's webhook secrets, which sign its notifications (none: unsigned). */
  secrets(appId: number): Promise<string[]>;
  /** Look for work again in `ms` (a backoff ending). */
  wakeIn(ms: number): void;
  /**
   * Channels read from their Subscription, by `res_id:def_hash`: this process's memory only, never
   * logged (headers may carry the receiver's credentials).
   */
  channels: Map<string, Channel>;
}

/** Notifications one claim sends at most before the subscription goes back in line (others get their turn). */
const PER_CLAIM = 200;
/** Notifications read (and numbered) at once. */
const BATCH = 20;

const scopeOf = (s: statements.ClaimedRow): Scope => ({ partitionId: s.partition_id, ownerId: s.owner_id });

/** Serves a claimed subscription; answers whether it has more to send now (its claim's budget ran out). */
export async function serve(d: ServeDeps, s: statements.ClaimedRow): Promise<boolean> {
  // Given back by the statement that records the last delivery (or a failure), or at the end.
  const lease = { released: false };
  try {
    // The channel as the definition the subscription was claimed with has it (its hash names the version's channel).
    const key = `${s.res_id}:${s.def_hash}`;
    let channel = d.channels.get(key);
    if (!channel) {
      const current = await d.repo.readCurrent(d.pool, scopeOf(s), 'Subscription', s.fhir_id);
      // Deleted meanwhile: the write hook removes it from the registry.
      if (!current?.json) return false;
      try {
        channel = channelOf(JSON.parse(current.json) as SubscriptionLike);
      } catch (err) {
        await setStatus(d, s, 'error', (err as Error).message);
        return false;
      }
      if (d.channels.size >= 10_000) d.channels.clear();
      d.channels.set(key, channel);
    }
    // Past its end (Subscription.end): turned off, with nothing more sent.
    if (s.ended) {
      await setStatus(d, s, 'off', null);
      return false;
    }
    const secrets = await d.secrets(s.partition_id);
    // Once active, at once to what it may have to send (kept while it was in error, say).
    if (s.status === 'requested') return await activate(d, s, channel, secrets, lease);
    let n = 0;
    while (n < PER_CLAIM && !d.signal.aborted) {
      const rows = (await d.pool.query<statements.PendingRow>(statements.pending(s.res_id, BATCH))).rows;
      if (!rows.length) break;
      for (const [i, row] of rows.entries()) {
        if (d.signal.aborted) return false;
        if (row.verify && !(await stillMatches(d, s, row))) {
          await d.pool.query(statements.dropNotification(row.id));
          continue;
        }
        const number =
          row.event_number ?? (await d.pool.query<{ event_number: string }>(statements.numberEvent(s.res_id, row.id))).rows[0].event_number;
        const last = rows.length < BATCH && i === rows.length - 1;
        const ok = await attempt(d, s, channel, secrets, row.id, () => eventRequest(d, s, channel, row, number), lease, last);
        if (!ok) return false;
        n++;
      }
      // A short batch was the last: what commits meanwhile wakes the dispatcher again.
      if (rows.length < BATCH) break;
    }
    if (n === 0 && s.heartbeat_due && s.topic) {
      await attempt(d, s, channel, secrets, null, async () => ({ body: JSON.stringify(bundleOf(d, s, 'heartbeat', channel, [])) }), lease, true);
    }
    return n >= PER_CLAIM;
  } finally {
    if (!lease.released) await d.pool.query(statements.release(s.res_id)).catch(() => {});
  }
}

/** requested -> active: at once for R4 criteria; for a topic-based one once its endpoint took the handshake. */
async function activate(d: ServeDeps, s: statements.ClaimedRow, channel: Channel, secrets: string[], lease: { released: boolean }): Promise<boolean> {
  if (s.problem) {
    await setStatus(d, s, 'error', s.problem);
    return false;
  }
  if (s.topic) {
    const ok = await attempt(
      d,
      s,
      channel,
      secrets,
      null,
      async () => ({
        body: JSON.stringify(bundleOf(d, s, 'handshake', channel, [], 'requested')),
      }),
      lease,
    );
    if (!ok) return false;
  }
  await setStatus(d, s, 'active', null);
  return true;
}

function bundleOf(d: ServeDeps, s: statements.ClaimedRow, type: NotificationType, channel: Channel, events: NotificationEvent[], status = 'active') {
  return notificationBundle(
    { base: d.base, subscriptionId: s.fhir_id, topic: s.topic, status, type, eventsSinceStart: s.events, withFocus: channel.payload !== 'empty' },
    events,
  );
}

interface Outgoing {
  /** undefined: no body (R4's empty notification, or a delete). */
  body?: string;
  method?: 'POST' | 'PUT' | 'DELETE';
  /** Under the endpoint (R4 with a payload: the endpoint is a FHIR base, the resource PUT to [type]/[id]). */
  path?: string;
}

/**
 * What to send for one event: R4's empty POST, or (with a payload) the resource PUT to [type]/[id] of
 * the endpoint and a delete sent as DELETE there, as HAPI FHIR does; the backport's Bundle.
 */
async function eventRequest(d: ServeDeps, s: statements.ClaimedRow, channel: Channel, row: statements.PendingRow, number: string): Promise<Outgoing> {
  const version = Number(row.res_ver);
  const needResource = channel.payload === 'full' && !row.deleted;
  const stored = needResource ? await d.repo.readVersion(d.pool, scopeOf(s), row.res_type, row.fhir_id, version) : undefined;
  const resource = stored?.json ? (JSON.parse(stored.json) as Resource) : undefined;
  if (!s.topic) {
    if (channel.payload === 'none') return {};
    const path = `/${row.res_type}/${row.fhir_id}`;
    return row.deleted ? { method: 'DELETE', path } : { method: 'PUT', path, body: stored?.json ?? undefined };
  }
  s.events = number;
  const event: NotificationEvent = {
    number,
    timestamp: row.created_at,
    type: row.res_type,
    id: row.fhir_id,
    version,
    deleted: row.deleted,
    resource,
  };
  return { body: JSON.stringify(bundleOf(d, s, 'event-notification', channel, [event])) };
}

/** Whether the version still matches the whole criteria, by a search of it alone (the parts the write path could not evaluate). */
async function stillMatches(d: ServeDeps, s: statements.ClaimedRow, row: statements.PendingRow): Promise<boolean> {
  const [type, q] = splitCriteria(s.criteria!);
  const query = new URLSearchParams(q);
  query.append('_id', row.fhir_id);
  try {
    return (await d.search.match(d.pool, { ...scopeOf(s), ownOnly: true, baseUrl: d.base }, type, query, 1)).length > 0;
  } catch (err) {
    d.log.warn({ subscription: s.fhir_id, err: String(err) }, 'subscription criteria could not be checked; the notification is dropped');
    return false;
  }
}

/**
 * One delivery; on a 2xx the notification is marked sent, otherwise the subscription backs off (and
 * at the limit goes to error). Returns whether it was taken. The endpoint and headers are never
 * logged (a header may carry a receiver's credentials, the URL a token).
 */
async function attempt(
  d: ServeDeps,
  s: statements.ClaimedRow,
  channel: Channel,
  secrets: string[],
  rowId: string | null,
  make: () => Promise<Outgoing>,
  lease: { released: boolean },
  releaseOnSuccess = false,
): Promise<boolean> {
  let problem: string;
  try {
    const out = await make();
    const msgId = rowId ? `msg_sub${s.res_id}_${rowId}` : `msg_${randomUUID().replaceAll('-', '')}`;
    const now = new Date();
    const body = out.body ?? '';
    const headers: Record<string, string> = Object.fromEntries(channel.headers);
    headers['webhook-id'] = msgId;
    headers['webhook-timestamp'] = String(Math.floor(now.getTime() / 1000));
    if (secrets.length) headers['webhook-signature'] = signature(secrets, msgId, now, body);
    if (out.body !== undefined) headers['content-type'] = 'application/fhir+json';
    const url = out.path ? `${channel.endpoint.replace(/\/+$/, '')}${out.path}` : channel.endpoint;
    const res = await d.fetch(url, {
      method: out.method ?? 'POST',
      headers,
      body: out.body,
      redirect: 'manual',
      signal: AbortSignal.any([d.signal, AbortSignal.timeout(d.timeoutMs)]),
    });
    await res.body?.cancel().catch(() => {});
    // A receiver that never had the deleted resource (404, 410) has it gone too: taken.
    if ((res.status >= 200 && res.status <= 299) || (out.method === 'DELETE' && (res.status === 404 || res.status === 410))) {
      await d.pool.query(statements.sent(s.res_id, rowId, d.leaseSeconds, releaseOnSuccess));
      lease.released = releaseOnSuccess;
      return true;
    }
    problem = `the endpoint answered ${res.status}`;
  } catch (err) {
    const e = err as Error & { code?: string };
    problem =
      e.name === 'TimeoutError' ? `the endpoint did not answer within ${d.timeoutMs} ms` : `the endpoint could not be reached (${e.code ?? e.name})`;
  }
  if (d.signal.aborted) return false;
  const delay = Math.min(600_000, d.retry.baseMs * 2 ** Math.min(20, s.failures));
  const failures = (await d.pool.query<{ failures: number }>(statements.failed(s.res_id, rowId, delay))).rows[0]?.failures ?? 0;
  lease.released = true;
  s.failures = failures;
  d.log.warn({ subscription: s.fhir_id, app: s.partition_id, failures, problem }, 'subscription notification failed');
  if (failures >= d.retry.limit) await setStatus(d, s, 'error', `Notifications failed ${failures} times in a row; the last time ${problem}.`);
  else d.wakeIn(delay);
  return false;
}

/**
 * The dispatcher's status change, on the registry and the Subscription resource (a new version,
 * with Subscription.error set or cleared) in one transaction; skipped when the subscription was
 * changed meanwhile (its new definition is the one to act on).
 */
async function setStatus(d: ServeDeps, s: statements.ClaimedRow, status: 'active' | 'error' | 'off', error: string | null): Promise<void> {
  const scope = scopeOf(s);
  await inTransaction(d.pool, async (client) => {
    const { rowCount } = await client.query(statements.setRegistryStatus(s.res_id, s.def_hash, status, error));
    if (!rowCount) return;
    const existing = (await d.repo.lockCurrent(client, scope, [{ type: 'Subscription', id: s.fhir_id }])).get(`Subscription/${s.fhir_id}`);
    const current = existing && !existing.deleted ? await d.repo.readCurrent(client, scope, 'Subscription', s.fhir_id) : undefined;
    if (!existing || !current?.json) return;
    const resource = JSON.parse(current.json) as SubscriptionLike;
    resource.status = status;
    if (error) resource.error = error.slice(0, 1000);
    else delete resource.error;
    await d.repo.write(client, scope, [
      { type: 'Subscription', id: s.fhir_id, existing, resource: resource as Resource, indexes: d.indexer.extract(resource as Resource, null) },
    ]);
  });
  // Before anything else runs here: this process's next write matches with it.
  d.registry.markChanged();
}
