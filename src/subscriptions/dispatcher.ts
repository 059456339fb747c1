/**
 * This process's subscription dispatcher: it leases subscriptions that have work (a lease in the
 * registry row, so that any number of processes share them and one subscription is served by one
 * of them at a time, in order) and serves up to `concurrency` at once (src/subscriptions/serve.ts).
 * A subscription whose endpoint is slow or gone holds one slot for at most a delivery's timeout
 * and then backs off, so others are never held up behind it. It looks for work as soon as a write
 * with notifications commits (LISTEN trb_subscription_outbox, NOTIFYed by the outbox's trigger on
 * commit; at most every MIN_GAP_MS), when the registry changes (a subscription to activate), when
 * a backoff ends, and every second besides (heartbeats due, a notification missed). One app's
 * subscriptions hold at most a quarter of the slots, so one app's slow receivers never hold up
 * another app's.
 */
import { keepListening } from '../db/listen.ts';
import type { Vault } from '../auth/vault.ts';
import { Alarm } from '../event-loop.ts';
import { webhookOf } from '../sync/webhooks.ts';
import type { Channel } from './definition.ts';
import { serve, type ServeDeps } from './serve.ts';
import * as statements from './sql.ts';

export interface DispatcherDeps extends Omit<ServeDeps, 'signal' | 'secrets' | 'wakeIn' | 'channels'> {
  vault: Vault;
  concurrency: number;
  log: ServeDeps['log'] & { error(o: object, msg: string): void };
  /** Sent notifications are kept this many days for $events. */
  keepDays?: number;
}

const IDLE_POLL_MS = 1000;
/**
 * At most one look for work this often, however many writes commit notifications meanwhile: each
 * look is a query, and a busy write path would otherwise ask it once per commit.
 */
const MIN_GAP_MS = 50;
/** An app's webhook secrets are read (and opened) at most this often. */
const SECRETS_TTL_MS = 10_000;

export function startDispatcher(d: DispatcherDeps): { wake(): void; stop(): Promise<void> } {
  const closing = new AbortController();
  const alarm = new Alarm();
  const held = new Map<string, Promise<void>>();
  /** Subscriptions held per app: one app's receivers hold at most a quarter of the slots, as the webhooks' (src/sync/webhook-deliveries.ts). */
  const perApp = new Map<number, number>();
  const share = Math.max(1, Math.floor(d.concurrency / 4));
  const wake = () => alarm.wake();
  const wakeIn = (ms: number) => void setTimeout(wake, ms + 5).unref();
  let listening: { stop(): Promise<void> } | undefined;
  const channels = new Map<string, Channel>();
  /** Notifications heard: one that came while a subscription was held may be for it (looked at again once it is released). */
  let notified = 0;
  const opened = new Map<number, { at: number; secrets: Promise<string[]> }>();
  /** The app's webhook secrets (none: notifications go unsigned), read at most every SECRETS_TTL_MS. */
  const secrets = (appId: number): Promise<string[]> => {
    const hit = opened.get(appId);
    if (hit && Date.now() - hit.at < SECRETS_TTL_MS) return hit.secrets;
    const p = webhookOf(d.pool, d.vault, appId).then((h) => h?.secrets ?? []);
    p.catch(() => opened.delete(appId));
    opened.set(appId, { at: Date.now(), secrets: p });
    return p;
  };

  const listen = () =>
    keepListening({
      pool: d.pool,
      channels: ['trb_subscription_outbox', 'trb_subscriptions'],
      onNotify: () => {
        notified++;
        wake();
      },
      onFail: (err) => d.log.warn({ err: String(err) }, 'subscriptions: could not LISTEN; the dispatcher polls'),
    });

  let lastPurge = 0;
  let lastClaim = 0;
  const loop = (async () => {
    listening = await listen();
    while (!closing.signal.aborted) {
      const free = d.concurrency - held.size;
      if (free <= 0) {
        await alarm.sleep(IDLE_POLL_MS);
        continue;
      }
      const gap = lastClaim + MIN_GAP_MS - Date.now();
      if (gap > 0) await new Promise((r) => setTimeout(r, gap));
      lastClaim = Date.now();
      let claimed: statements.ClaimedRow[] = [];
      try {
        const full = [...perApp].filter(([, n]) => n >= share).map(([app]) => app);
        claimed = (await d.pool.query<statements.ClaimedRow>(statements.claim(free, [...held.keys()], d.leaseSeconds, full))).rows;
        // Past an app's share (several of one app in one claim): given back at once, for later.
        const over: statements.ClaimedRow[] = [];
        const counted = new Map(perApp);
        claimed = claimed.filter((s) => {
          const n = counted.get(s.partition_id) ?? 0;
          if (n >= share) return !over.push(s);
          counted.set(s.partition_id, n + 1);
          return true;
        });
        for (const s of over) await d.pool.query(statements.release(s.res_id));
        if (Date.now() - lastPurge > 3_600_000) {
          lastPurge = Date.now();
          await d.pool.query(statements.purgeSent(d.keepDays ?? 7));
        }
      } catch (err) {
        if (!closing.signal.aborted) d.log.error({ err: String(err) }, 'subscriptions: the registry could not be read');
      }
      for (const s of claimed) {
        const full = held.size + 1 >= d.concurrency || (perApp.get(s.partition_id) ?? 0) + 1 >= share;
        const heard = notified;
        perApp.set(s.partition_id, (perApp.get(s.partition_id) ?? 0) + 1);
        const p = serve({ ...d, secrets, wakeIn, channels, signal: closing.signal }, s)
          .catch((err) => {
            d.log.error({ subscription: s.fhir_id, err: String(err) }, 'subscription could not be served');
            return false;
          })
          .then((more) => {
            // Its slot free before the loop looks again (it may be the one with more to send).
            held.delete(s.res_id);
            const left = perApp.get(s.partition_id)! - 1;
            if (left) perApp.set(s.partition_id, left);
            else perApp.delete(s.partition_id);
            // Look again at once only when there is more to do, a slot was wanted, or work came meanwhile.
            if (more || full || notified !== heard) wake();
          });
        held.set(s.res_id, p);
      }
      // Full claims mean more may be waiting: look again at once.
      if (claimed.length < free) await alarm.sleep(IDLE_POLL_MS);
    }
  })();

  return {
    wake,
    stop: async () => {
      closing.abort();
      wake();
      await loop;
      await Promise.all(held.values());
      await listening?.stop();
    },
  };
}
