/** What the paging modules (./snapshot.ts for sorted searches, ./keyset.ts for the others) take and give. */
import type { BundleLink } from '@medplum/fhirtypes';
import type { RequestContext } from '../fhir/ports.ts';
import type { Db, Repository, StoredVersion } from '../storage/repository.ts';
import type { Parsed } from './parse.ts';
import type { SqlBuilder } from './sql-builder.ts';

export interface PageRequest {
  db: Db;
  repo: Repository;
  ctx: RequestContext;
  b: SqlBuilder;
  /** `FROM ${source}`: hfj_resource r and its conditions (WHERE ...; more may be ANDed on). */
  source: string;
  /** The parameters of `source` alone (counts run it without the ORDER BY's and paging's). */
  whereValues: unknown[];
  /** The parsed query; a page adds its warnings, and the snapshot a sorted search made. */
  p: Parsed;
  /** The URL of another page of this search: the query without paging parameters, and `extra`. */
  link(extra: Record<string, string>): string;
}

export interface Page {
  versions: StoredVersion[];
  total: number | undefined;
  /** The next and previous links, where there are such pages. */
  links: BundleLink[];
}
