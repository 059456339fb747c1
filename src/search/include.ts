/**
 * `_include` and `_revinclude` (with `:iterate`, `*` and a target type): the resources a page's
 * matches reference, or that reference them, through hfj_res_link.
 * See: https://hl7.org/fhir/R4/search.html#include
 */
import { DIRECTORY_TYPES, type RequestContext, type SearchParamInfo, type SearchParamLookup } from '../fhir/ports.ts';
import type { ResourceScope } from '../auth/scopes.ts';
import type { Db, Repository, StoredVersion } from '../storage/repository.ts';
import { READ_COLUMNS } from '../storage/sql.ts';
import { grantCondition } from './grants.ts';
import { MAX_INCLUDES, MAX_ITERATE } from './limits.ts';
import { conditionContext, ownedRows } from './params/context.ts';
import { targetFilter } from './params/reference.ts';
import type { IncludeSpec, Parsed } from './parse.ts';
import { inScope } from './scope.ts';
import { SqlBuilder } from './sql-builder.ts';

export class Includes {
  private readonly params: SearchParamLookup;
  private readonly repo: Repository;

  constructor(params: SearchParamLookup, repo: Repository) {
    this.params = params;
    this.repo = repo;
  }

  /** Included and reverse-included resources of a page, without the page's own and without repeats. */
  async includes(
    db: Db,
    ctx: RequestContext,
    p: Parsed,
    page: StoredVersion[],
    grants: ResourceScope[] | undefined,
  ): Promise<{ versions: StoredVersion[]; truncated: boolean }> {
    if (!p.include.length && !p.revinclude.length) return { versions: [], truncated: false };
    const seen = new Set(page.map((v) => v.resId));
    const out: StoredVersion[] = [];
    let truncated = false;
    const add = (vs: StoredVersion[]): StoredVersion[] => {
      const fresh: StoredVersion[] = [];
      for (const v of vs) {
        if (seen.has(v.resId)) continue;
        if (out.length >= MAX_INCLUDES) {
          truncated = true;
          break;
        }
        seen.add(v.resId);
        out.push(v);
        fresh.push(v);
      }
      return fresh;
    };
    // First round: every include applies to the matches.
    let frontier = page;
    let round = 0;
    let specs = { include: p.include, revinclude: p.revinclude };
    while (frontier.length && round <= MAX_ITERATE && !truncated) {
      const found: StoredVersion[] = [];
      for (const spec of specs.include) found.push(...(await this.follow(db, ctx, spec, frontier, false, grants)));
      for (const spec of specs.revinclude) found.push(...(await this.follow(db, ctx, spec, frontier, true, grants)));
      frontier = add(found);
      // Later rounds: only the :iterate ones, over what the last round brought in.
      specs = { include: p.include.filter((s) => s.iterate), revinclude: p.revinclude.filter((s) => s.iterate) };
      if (!specs.include.length && !specs.revinclude.length) break;
      round++;
    }
    return { versions: out, truncated };
  }

  /**
   * The resources one `_include` (rev false) or `_revinclude` (rev true) reaches from `from`: of
   * the types the scopes allow, their filters applied (what an include brings is searched too).
   */
  private async follow(
    db: Db,
    ctx: RequestContext,
    spec: IncludeSpec,
    from: StoredVersion[],
    rev: boolean,
    grants: ResourceScope[] | undefined,
  ): Promise<StoredVersion[]> {
    const b = new SqlBuilder();
    const c = conditionContext(this.params, ctx, b, db, grants);
    const limit = MAX_INCLUDES + 1;
    if (!rev) {
      // Links out of the page's resources of the source type, through the parameter's paths.
      const sources = from.filter((v) => spec.sourceType === '*' || v.type === spec.sourceType);
      if (!sources.length) return [];
      const pathCond = this.pathCondition(b, spec, sources);
      if (pathCond === null) return [];
      const target = spec.targetType ? ` AND l.target_resource_type = ${b.param(spec.targetType)}` : '';
      const reach = this.includeTargets(spec);
      const sourceOwners = ownedRows(c, spec.sourceType, 'l');
      // A parameter of unknown targets (or of any type, `Resource`) may reach any granted type.
      const granted = await grantCondition(c, 'r', reach === DIRECTORY_TYPES || reach.includes('Resource') ? null : reach);
      if (granted === 'false') return [];
      return this.repo.versions(
        db,
        `SELECT ${READ_COLUMNS} FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver
         WHERE ${inScope(b, ctx, 'r', reach)} AND ${granted} AND (r.res_type, r.fhir_id) IN (
           SELECT l.target_resource_type, l.target_fhir_id FROM hfj_res_link l
           WHERE l.src_resource_id = ANY(${b.param(sources.map((v) => v.resId))}::bigint[])${sourceOwners ? ` AND ${sourceOwners}` : ''} AND ${pathCond}${target} AND l.target_fhir_id IS NOT NULL)
         LIMIT ${limit}`,
        b.values,
      );
    }
    // Resources of the source type whose parameter points at one of the page's resources.
    const targets = from.filter((v) => !spec.targetType || v.type === spec.targetType);
    if (!targets.length) return [];
    const pathCond = spec.sourceType === '*' ? 'true' : this.pathCondition(b, spec, null);
    if (pathCond === null) return [];
    const typeCond = spec.sourceType === '*' ? '' : ` AND r.res_type = ${b.param(spec.sourceType)}`;
    const granted = await grantCondition(c, 'r', spec.sourceType === '*' ? null : [spec.sourceType]);
    if (granted === 'false') return [];
    // The sources are the links' (an array read by primary key: planned once, the plan must not walk
    // all of a user's resources of the type to find the few that point at the page), the user's own.
    const own = ownedRows(c, spec.sourceType, 'l');
    return this.repo.versions(
      db,
      `SELECT ${READ_COLUMNS} FROM hfj_resource r JOIN hfj_res_ver v ON v.res_id = r.res_id AND v.owner_id = r.owner_id AND v.res_ver = r.res_ver
       WHERE ${inScope(b, ctx, 'r', spec.sourceType === '*' ? DIRECTORY_TYPES : [spec.sourceType])}${typeCond} AND ${granted} AND r.res_id = ANY(ARRAY(
         SELECT l.src_resource_id FROM hfj_res_link l
         WHERE (l.target_fhir_id, l.target_resource_type) IN (SELECT * FROM unnest(${b.param(targets.map((v) => v.id))}::text[], ${b.param(targets.map((v) => v.type))}::text[]))
           AND ${pathCond}${own ? ` AND ${own}` : ''}))
       LIMIT ${limit}`,
      b.values,
    );
  }

  /** The types an `_include` may reach: its target type, else its parameter's targets; unknown: any. */
  private includeTargets(spec: IncludeSpec): readonly string[] {
    if (spec.targetType) return [spec.targetType];
    const targets = spec.param ? this.params.get(spec.sourceType, spec.param)?.targets : undefined;
    return targets?.length ? targets : DIRECTORY_TYPES;
  }

  /** `l.src_path = ANY(...)` for an include's parameter (all reference parameters for `*`); null when none. */
  private pathCondition(b: SqlBuilder, spec: IncludeSpec, sources: StoredVersion[] | null): string | null {
    let params: SearchParamInfo[];
    if (spec.param) params = [this.params.get(spec.sourceType, spec.param)!];
    else {
      const types = spec.sourceType === '*' ? [...new Set((sources ?? []).map((v) => v.type))] : [spec.sourceType];
      params = types.flatMap((t) => this.params.list(t).filter((x) => x.type === 'reference'));
    }
    const conds: string[] = [];
    for (const sp of params) {
      if (!sp.paths.length) continue;
      conds.push(`(l.src_path = ANY(${b.param(sp.paths)})${targetFilter(b, sp, false)})`);
    }
    return conds.length ? `(${conds.join(' OR ')})` : null;
  }
}
