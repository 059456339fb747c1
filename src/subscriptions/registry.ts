/**
 * This process's copy of the active subscriptions, compiled for the write path and filed so that
 * a write looks only at those that could match it: by partition (the app), owner (the user; the
 * app's own subscriptions hear of all its users) and resource type, and within a type by the index
 * keys a match must have (a token such as `code=http://loinc.org|1234-5`, or `_id`), the rest
 * looked at for every write of the type. A partition without subscriptions costs a write one Map
 * lookup.
 *
 * It is reloaded whole when the registry's version changes: at once in the process that changed it
 * (markChanged, after its commit), within milliseconds elsewhere (LISTEN trb_subscriptions, the
 * version row's trigger NOTIFYing on commit), and every few seconds at worst (the version polled),
 * should a notification be lost with its connection.
 */
import pg from 'pg';
import type { SearchParamLookup } from '../fhir/ports.ts';
import type { ResourceIndexes } from '../indexing/types.ts';
import { compile, type Interaction } from './definition.ts';
import { idKey, tokenKeys, type CompiledCriteria } from './evaluate.ts';
import * as statements from './sql.ts';

export interface ActiveSubscription {
  resId: string;
  id: string;
  partitionId: number;
  ownerId: string | null;
  type: string;
  query: [string, string][];
  compiled: CompiledCriteria;
  interactions: ReadonlySet<Interaction>;
  /** Subscription.end (epoch ms): no write after it is heard of; null: none. */
  endsAt: number | null;
}

interface TypeIndex {
  byKey: Map<string, ActiveSubscription[]>;
  scan: ActiveSubscription[];
}

/** partition -> owner ('' for the app's own) -> type -> index. */
type Filed = Map<number, Map<string, Map<string, TypeIndex>>>;

export interface Match {
  sub: ActiveSubscription;
  /** Whether parts of the criteria are left to a SQL check before delivery. */
  verify: boolean;
}

export interface RegistryDeps {
  pool: pg.Pool;
  params: SearchParamLookup;
  baseUrls: string[];
  log: { warn(o: object, msg: string): void };
  /** How often the version is checked besides the notifications (ms). */
  pollMs?: number;
}

export class SubscriptionRegistry {
  private filed: Filed = new Map();
  private compiled = new Map<string, ReturnType<typeof compile>>();
  private version: string | undefined;
  private loading: Promise<void> | undefined;
  private stale = true;
  private timer: NodeJS.Timeout | undefined;
  private listener: pg.Client | undefined;
  private closed = false;
  private readonly deps: RegistryDeps;
  count = 0;

  constructor(deps: RegistryDeps) {
    this.deps = deps;
  }

  /** Loads the registry, then keeps it current (LISTEN, and the version polled). */
  async start(): Promise<void> {
    await this.listen();
    await this.ensure();
    this.timer = setInterval(() => void this.poll(), this.deps.pollMs ?? 2000);
    this.timer.unref();
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client(this.deps.pool.options);
    client.on('error', () => {});
    client.on('end', () => {
      // Lost: the poll covers the gap; listen again shortly.
      if (this.listener === client) this.listener = undefined;
      if (!this.closed) setTimeout(() => void this.listen().catch(() => {}), 1000).unref();
    });
    client.on('notification', () => this.markChanged());
    try {
      await client.connect();
      await client.query('LISTEN trb_subscriptions');
      this.listener = client;
      // Whatever changed while no one listened.
      this.markChanged();
    } catch (err) {
      this.deps.log.warn({ err: String(err) }, 'subscriptions: could not LISTEN; the registry is polled');
      await client.end().catch(() => {});
    }
  }

  private async poll(): Promise<void> {
    try {
      const { rows } = await this.query<{ version: string }>(statements.registryVersion());
      if (rows[0]?.version !== this.version) this.markChanged();
    } catch {
      // The next poll tries again.
    }
  }

  /**
   * A query on the registry's own connection (the listener's), never the pool's: a write waits for
   * a reload while it holds a pooled connection, and writers holding every pooled connection must
   * not wait for one more. Without the listener, on a connection of its own for the query.
   */
  private async query<T extends pg.QueryResultRow>(q: statements.Sql): Promise<pg.QueryResult<T>> {
    if (this.listener) {
      try {
        return await this.listener.query<T>(q);
      } catch {
        // The connection broke: once more on a fresh one.
      }
    }
    const client = new pg.Client(this.deps.pool.options);
    client.on('error', () => {});
    await client.connect();
    try {
      return await client.query<T>(q);
    } finally {
      await client.end().catch(() => {});
    }
  }

  async stop(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    const l = this.listener;
    this.listener = undefined;
    await l?.end().catch(() => {});
  }

  /** The registry changed (this process committed a change, or heard of one): reloaded before the next write matches. */
  markChanged(): void {
    this.stale = true;
    // Reloaded now, so that a write seldom has to wait for it (it waits when it comes first).
    if (!this.closed) void this.ensure().catch(() => {});
  }

  /** Current (reloaded first when stale). */
  async ensure(): Promise<void> {
    while (this.stale) {
      this.loading ??= this.load().finally(() => (this.loading = undefined));
      await this.loading;
    }
  }

  private async load(): Promise<void> {
    this.stale = false;
    let rows: statements.ActiveRow[];
    try {
      // One statement: the version and the rows of one snapshot.
      rows = (await this.query<statements.ActiveRow>(statements.activeSubscriptions())).rows;
    } catch (err) {
      this.stale = true;
      throw err;
    }
    const version = rows[0].version;
    const filed: Filed = new Map();
    const compiled = new Map<string, ReturnType<typeof compile>>();
    let count = 0;
    for (const r of rows) {
      if (r.res_id === null) continue;
      // Compiled once per criteria text: a reload (after every activation, say) compiles only what is new.
      let c = this.compiled.get(r.criteria);
      try {
        c ??= compile(this.deps.params, r.criteria, this.deps.baseUrls);
        compiled.set(r.criteria, c);
      } catch (err) {
        // A search parameter that went away since it was accepted: it matches nothing until written again.
        this.deps.log.warn({ subscription: r.fhir_id, err: String(err) }, 'subscription criteria no longer compile');
        continue;
      }
      const sub: ActiveSubscription = {
        resId: r.res_id,
        id: r.fhir_id,
        partitionId: r.partition_id,
        ownerId: r.owner_id,
        type: c.type,
        query: c.query,
        compiled: c.compiled,
        interactions: new Set(r.interactions),
        endsAt: r.ends_at ? r.ends_at.getTime() : null,
      };
      const byOwner = filed.get(sub.partitionId) ?? filed.set(sub.partitionId, new Map()).get(sub.partitionId)!;
      const byType = byOwner.get(sub.ownerId ?? '') ?? byOwner.set(sub.ownerId ?? '', new Map()).get(sub.ownerId ?? '')!;
      const ix = byType.get(sub.type) ?? byType.set(sub.type, { byKey: new Map(), scan: [] }).get(sub.type)!;
      if (c.compiled.keys.length) for (const k of c.compiled.keys) (ix.byKey.get(k) ?? ix.byKey.set(k, []).get(k)!).push(sub);
      else ix.scan.push(sub);
      count++;
    }
    this.filed = filed;
    this.compiled = compiled;
    this.count = count;
    this.version = version;
  }

  /** Whether any subscription of the partition is active (the write path's one check when none is). */
  has(partitionId: number): boolean {
    return this.filed.has(partitionId);
  }

  /** Whether an active subscription of the partition hears of deletes of the type (a delete's index rows are read only then). */
  hearsDeletes(partitionId: number, ownerId: string | null, type: string): boolean {
    const byOwner = this.filed.get(partitionId);
    for (const owner of ownerId === null ? [''] : ['', ownerId]) {
      const ix = byOwner?.get(owner)?.get(type);
      if (!ix) continue;
      if (ix.scan.some((s) => s.interactions.has('delete'))) return true;
      for (const subs of ix.byKey.values()) if (subs.some((s) => s.interactions.has('delete'))) return true;
    }
    return false;
  }

  /**
   * The active subscriptions that hear of `interaction` which a version matches, in memory, from its
   * index rows (a delete's: those of the version it deleted).
   */
  match(partitionId: number, ownerId: string | null, type: string, id: string, indexes: ResourceIndexes, interaction: Interaction): Match[] {
    const byOwner = this.filed.get(partitionId);
    if (!byOwner) return [];
    const out: Match[] = [];
    const now = Date.now();
    // The app's own subscriptions hear of every user's records; a user's only of their own.
    for (const owner of ownerId === null ? [''] : ['', ownerId]) {
      const ix = byOwner.get(owner)?.get(type);
      if (!ix) continue;
      const cand = { id, indexes };
      const test = (sub: ActiveSubscription) => {
        if (sub.interactions.has(interaction) && sub.compiled.tests.every((t) => t(cand)))
          out.push({ sub, verify: sub.compiled.deferred.length > 0 });
      };
      for (const sub of ix.scan) test(sub);
      if (!ix.byKey.size) continue;
      // Filed by key: only those the version's own token rows (or id) name, each looked at once.
      let seen: Set<ActiveSubscription> | undefined;
      const look = (k: string) => {
        const subs = ix.byKey.get(k);
        if (!subs) return;
        for (const sub of subs) {
          if (seen?.has(sub)) continue;
          (seen ??= new Set()).add(sub);
          test(sub);
        }
      };
      look(idKey(id));
      for (const r of indexes.tokens) if (!r.missing) for (const k of tokenKeys(r.name, r.system, r.value)) look(k);
    }
    return out;
  }
}
