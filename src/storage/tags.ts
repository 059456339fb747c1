/**
 * hfj_tag_def rows: one per distinct (type, system, code, version, display), shared by all
 * resources and never changed once written. Both ways are cached per process: a write finds the id
 * of each tag (unknown ones are inserted; concurrent inserts of the same tag meet on the unique
 * index and both read the winner's id), a read the definition of each id its versions name.
 */
import type pg from 'pg';
import type { IdAllocator } from './ids.ts';
import type { RowMeta, TagInput } from './meta.ts';
import { tagDefinitions } from './sql.ts';
import { insertTagDefinitions, tagIdsOf } from './statements.ts';

export type TagDefinition = NonNullable<RowMeta['tags']>[number];

function key(t: TagInput): string {
  return JSON.stringify([t.type, t.system ?? '', t.code ?? '', t.version ?? '', t.display ?? '']);
}

const MAX = 200;
/** Definitions kept per process; past this (an app writing ever new tags) the caches start over. */
const CACHED = 10_000;

export class TagCache {
  private readonly ids = new Map<string, string>();
  private readonly definitions = new Map<string, TagDefinition>();
  private readonly allocator: IdAllocator;
  constructor(allocator: IdAllocator) {
    this.allocator = allocator;
  }

  /** The tag ids of each list of tags, in order, without duplicates within a list. */
  async resolve(client: pg.Pool | pg.PoolClient, lists: TagInput[][]): Promise<string[][]> {
    const missing = new Map<string, TagInput>();
    for (const list of lists) for (const t of list) if (!this.ids.has(key(t))) missing.set(key(t), t);
    if (missing.size) await this.load(client, [...missing.values()]);
    return lists.map((list) => [...new Set(list.map((t) => this.ids.get(key(t))!))]);
  }

  /** The definitions of tag ids (bigint as text), read from hfj_tag_def for those not cached. */
  async define(client: pg.Pool | pg.PoolClient, ids: Iterable<string>): Promise<Map<string, TagDefinition>> {
    const out = new Map<string, TagDefinition>();
    const missing = new Set<string>();
    for (const id of ids) {
      const known = this.definitions.get(id);
      if (known) out.set(id, known);
      else missing.add(id);
    }
    if (missing.size) {
      const { rows } = await client.query(tagDefinitions([...missing]));
      if (this.definitions.size + rows.length > CACHED) this.definitions.clear();
      for (const r of rows) {
        const d: TagDefinition = [r.tag_type, r.tag_system, r.tag_code, r.tag_display, r.tag_version, r.tag_user_selected];
        this.definitions.set(r.tag_id, d);
        out.set(r.tag_id, d);
      }
    }
    return out;
  }

  private async load(client: pg.Pool | pg.PoolClient, tags: TagInput[]): Promise<void> {
    const cut = (s: string | null) => (s === null ? null : s.slice(0, MAX));
    const ids = await this.allocator.take(client, tags.length);
    const cols = {
      type: tags.map((t) => t.type),
      system: tags.map((t) => cut(t.system)),
      code: tags.map((t) => cut(t.code)),
      display: tags.map((t) => cut(t.display)),
      version: tags.map((t) => (t.version === null ? null : t.version.slice(0, 30))),
      userSelected: tags.map((t) => t.userSelected),
    };
    await client.query(insertTagDefinitions(ids.map(String), cols.type, cols.system, cols.code, cols.display, cols.version, cols.userSelected));
    const { rows } = await client.query(tagIdsOf(cols.type, cols.system, cols.code, cols.display, cols.version));
    if (this.ids.size + rows.length > CACHED) this.ids.clear();
    for (const r of rows) {
      this.ids.set(
        key({ type: r.tag_type, system: r.tag_system, code: r.tag_code, display: r.tag_display, version: r.tag_version, userSelected: null }),
        r.tag_id,
      );
    }
    // Keys of the inputs may differ from the stored ones only by the cut; map those too.
    for (const t of tags) {
      if (this.ids.has(key(t))) continue;
      const stored = key({
        ...t,
        system: cut(t.system),
        code: cut(t.code),
        display: cut(t.display),
        version: t.version === null ? null : t.version.slice(0, 30),
      });
      const id = this.ids.get(stored);
      if (id) this.ids.set(key(t), id);
    }
  }
}
