/**
 * One sync of one connection: the system's records for the person, into the user's.
 * - What to ask for: `Patient/{id}/$everything` where the system's CapabilityStatement lists it
 *   (an increment adds `_since=<checkpoint>`); elsewhere `Patient?_id={id}`, then
 *   `{type}?patient={id}` for every US Core type it lists with a `patient` search (every one, when
 *   it lists none), an increment adding `_lastUpdated=gt<checkpoint>` per type. Both follow `next`
 *   links on the system's own origin only (a `next` elsewhere ends that search, recorded as an issue
 *   of the run, and is never requested). Then what those reference outside the patient's compartment (Practitioner,
 *   PractitionerRole, Organization, Location, Medication) and did not come along, once per sync.
 * - A resource that is not valid R4 is recorded in the run (an OperationOutcome issue) and skipped.
 * - What is stored: src/sync/mapper.ts (local ids, references, provenance tags), through the
 *   storage layer in one transaction with the checkpoints and a Provenance naming what this run
 *   created or changed; a resource whose content did not change makes no version. A run that
 *   dies before the commit leaves nothing half-done: the next run takes it all again.
 */
import type pg from 'pg';
import type { OperationOutcomeIssue, Provenance, Resource } from '@medplum/fhirtypes';
import type { Vault } from '../auth/vault.ts';
import { clientForSystem, connectionSealKey, type ClientKey, type Tokens } from '../connect/client.ts';
import { HEALTH_SYSTEM_ID } from '../directory/fhir-view.ts';
import { writeResources, type BulkDeps } from '../fhir/bulk.ts';
import type { ResourceValidator } from '../fhir/ports.ts';
import { scrubAddresses, type OutboundFetch } from '../net/outbound.ts';
import { inTransaction } from '../storage/transaction.ts';
import { localId, referencedTargets, toLocal, type Origin } from './mapper.ts';
import { NeedsReauth, SourceError, SourceSession, type SessionOptions } from './session.ts';

export const PATIENT_TYPES = [
  'AllergyIntolerance', 'CarePlan', 'CareTeam', 'Condition', 'Coverage', 'Device', 'DiagnosticReport', 'DocumentReference', 'Encounter', 'Goal',
  'Immunization', 'MedicationDispense', 'MedicationRequest', 'Observation', 'Procedure', 'QuestionnaireResponse', 'ServiceRequest', 'Specimen',
];
export const OUTSIDE_TYPES = ['Practitioner', 'PractitionerRole', 'Organization', 'Location', 'Medication'];
const PAGE_SIZE = 100;
/** Pages followed per type at most (a loop of `next` links ends here). */
const MAX_PAGES = 1000;
/** Skipped resources a run's log names one by one. */
const MAX_ISSUES = 100;

export interface SyncDeps extends BulkDeps {
  pool: pg.Pool;
  vault: Vault;
  validator: ResourceValidator;
  clientKey: () => Promise<ClientKey>;
  /** This server's origin: plain http is allowed to it (the sandboxes). */
  ownOrigin: string;
  /** The app's outbound fetch (src/net/outbound.ts): every request to the system goes through it. */
  fetch: OutboundFetch;
  session?: SessionOptions;
}

export interface RunSummary {
  runId: string;
  status: 'succeeded' | 'failed' | 'needs_reauth';
  fetched: number;
  created: number;
  updated: number;
  unchanged: number;
  failed: number;
  /** `everything` (Patient/$everything) or `per-type` (a search per type). */
  strategy?: 'everything' | 'per-type';
  /** Requests sent to the system, retries included. */
  requests: number;
  error?: string;
}

interface ConnectionRow {
  app_id: number;
  user_id: string;
  system_id: string;
  patient_id: string | null;
  access_token_sealed: Buffer;
  refresh_token_sealed: Buffer | null;
  access_expires_at: Date | null;
  name: string;
  resource_url: string;
  vendor: string | null;
}

type Bundle = { resourceType?: string; entry?: { resource?: Resource; search?: { mode?: string } }[]; link?: { relation?: string; url?: string }[] };

export async function syncConnection(deps: SyncDeps, connectionId: string): Promise<RunSummary> {
  const { rows } = await deps.pool.query<ConnectionRow>(
    `SELECT c.app_id, c.user_id, c.system_id, c.patient_id, c.access_token_sealed, c.refresh_token_sealed, c.access_expires_at, s.name, s.resource_url, s.vendor
     FROM trb_connection c JOIN trb_system s ON s.id = c.system_id WHERE c.id = $1 AND c.status = 'active'`,
    [connectionId],
  );
  const conn = rows[0];
  // Gone (disconnected), or waiting for the person to connect again: nothing to do, nothing to log.
  if (!conn) return { runId: '', status: 'needs_reauth', fetched: 0, created: 0, updated: 0, unchanged: 0, failed: 0, requests: 0, error: 'The connection is gone or needs the person to connect again.' };
  // One run at a time per connection (the queue sees to it): a run still marked running was cut off
  // (its worker stopped or died) and stored nothing, since a run commits all at once.
  const run = await deps.pool.query<{ id: string }>(
    `WITH cut AS (UPDATE trb_sync_run SET status = 'failed', finished_at = now(), error = $2 WHERE connection_id = $1 AND status = 'running')
     INSERT INTO trb_sync_run (connection_id) VALUES ($1) RETURNING id::text`,
    [connectionId, 'The run was cut off before it finished (its worker stopped or died); it stored nothing, and the next run took over.'],
  );
  const summary: RunSummary = { runId: run.rows[0].id, status: 'succeeded', fetched: 0, created: 0, updated: 0, unchanged: 0, failed: 0, requests: 0 };
  let session: SourceSession | undefined;
  const issues: OperationOutcomeIssue[] = [];
  try {
    if (!conn.patient_id) throw new NeedsReauth('The system named no patient when the person connected: connect again with launch/patient.');
    const origin: Origin = { userId: conn.user_id, systemId: conn.system_id, systemName: conn.name, base: conn.resource_url.replace(/\/+$/, '') };
    const sealKey = connectionSealKey(conn.user_id, conn.system_id);
    const sc = await clientForSystem(deps.pool, deps.vault, { id: conn.system_id, name: conn.name, resource_url: origin.base, vendor: conn.vendor }, deps.ownOrigin, deps.clientKey, deps.fetch);
    const tokens: Tokens = {
      accessToken: deps.vault.decrypt(conn.access_token_sealed, sealKey, 'connection-token'),
      refreshToken: conn.refresh_token_sealed ? deps.vault.decrypt(conn.refresh_token_sealed, sealKey, 'connection-token') : undefined,
      expiresAt: conn.access_expires_at,
      scope: '',
    };
    session = new SourceSession(
      sc,
      tokens,
      async (t) => {
        await deps.pool.query('UPDATE trb_connection SET access_token_sealed = $2, refresh_token_sealed = $3, access_expires_at = $4, updated_at = now() WHERE id = $1', [
          connectionId,
          deps.vault.encrypt(t.accessToken, sealKey, 'connection-token'),
          t.refreshToken ? deps.vault.encrypt(t.refreshToken, sealKey, 'connection-token') : conn.refresh_token_sealed,
          t.expiresAt,
        ]);
      },
      deps.session,
    );

    const fetched = await fetchRecords(session, origin, conn.patient_id, await checkpoints(deps.pool, connectionId), issues);
    summary.fetched = fetched.resources.length;
    summary.strategy = fetched.strategy;
    // Malformed resources are recorded and skipped.
    const good: Resource[] = [];
    for (const r of fetched.resources) {
      const problems = deps.validator.validate(r).filter((i) => i.severity === 'error' || i.severity === 'fatal');
      if (problems.length) {
        summary.failed++;
        issues.push({ severity: 'error', code: 'invalid', diagnostics: `${r.resourceType}/${r.id} from ${origin.base} was skipped: ${problems[0].diagnostics ?? 'not valid R4'}`.slice(0, 500) });
      } else good.push(r);
    }
    // Nothing new (the usual increment): nothing to store, and the checkpoints stay.
    if (good.length || fetched.newest.size) await store(deps, origin, conn, good, fetched.newest, connectionId, summary);
  } catch (err) {
    summary.status = err instanceof NeedsReauth ? 'needs_reauth' : 'failed';
    // The app reads it (GET /connect/connections, /runs): no internal address in it.
    summary.error = scrubAddresses((err as Error).message).slice(0, 1000);
  }
  summary.requests = session?.requests ?? 0;
  // The log keeps the first MAX_ISSUES skipped resources, and says how many more there were.
  if (issues.length > MAX_ISSUES) issues.splice(MAX_ISSUES, Infinity, { severity: 'error', code: 'too-costly', diagnostics: `${issues.length - MAX_ISSUES} more resources were skipped.` });
  // The run's record and the connection's state, in one statement.
  await deps.pool.query(
    `WITH run AS (UPDATE trb_sync_run SET finished_at = now(), status = $2, fetched = $3, created = $4, updated = $5, unchanged = $6, failed = $7, error = $8, issues = $9, strategy = $10, requests = $11 WHERE id = $1 RETURNING connection_id)
     UPDATE trb_connection SET last_sync_at = now(), last_error = $8,
       last_success_at = CASE WHEN $2 = 'succeeded' THEN now() ELSE last_success_at END,
       status = CASE WHEN $2 = 'needs_reauth' THEN 'needs_reauth' ELSE status END
     WHERE id = (SELECT connection_id FROM run)`,
    [summary.runId, summary.status, summary.fetched, summary.created, summary.updated, summary.unchanged, summary.failed, summary.error ?? null, scrubAddresses(JSON.stringify(issues)), summary.strategy ?? null, summary.requests],
  );
  return summary;
}

async function checkpoints(pool: pg.Pool, connectionId: string): Promise<Map<string, string>> {
  const { rows } = await pool.query<{ res_type: string; last_updated: string }>('SELECT res_type, last_updated FROM trb_sync_checkpoint WHERE connection_id = $1', [connectionId]);
  return new Map(rows.map((r) => [r.res_type, r.last_updated]));
}

/** What a system offers, from its CapabilityStatement, kept 10 minutes (not read by every sync). */
const CAPABILITIES_MS = 10 * 60_000;
const capabilitiesOf = new Map<string, { at: number; types: string[]; everything: boolean }>();

type CapabilityResource = { type?: string; searchParam?: { name?: string }[]; operation?: { name?: string; definition?: string }[] };
const isEverything = (op: { name?: string; definition?: string }) => op.name === 'everything' || /\/OperationDefinition\/Patient-everything$/.test(op.definition ?? '');

/**
 * Whether the system serves Patient/$everything, and the types it can search by patient (all of
 * them, when its CapabilityStatement lists no resources or cannot be read).
 */
async function capabilities(session: SourceSession, base: string): Promise<{ types: string[]; everything: boolean }> {
  const known = capabilitiesOf.get(base);
  if (known && Date.now() - known.at < CAPABILITIES_MS) return known;
  const cs = (await session.getJson(`${base}/metadata`).catch(() => undefined)) as { rest?: { resource?: CapabilityResource[]; operation?: { name?: string; definition?: string }[] }[] } | undefined;
  const listed = cs?.rest?.flatMap((r) => r.resource ?? []) ?? [];
  const everything =
    !!cs?.rest?.some((r) => r.operation?.some(isEverything)) || listed.some((r) => r.type === 'Patient' && r.operation?.some(isEverything));
  const byPatient = new Set(listed.filter((r) => r.searchParam?.some((p) => p.name === 'patient')).map((r) => r.type));
  const found = { at: Date.now(), types: listed.length ? PATIENT_TYPES.filter((t) => byPatient.has(t)) : PATIENT_TYPES, everything };
  if (cs) capabilitiesOf.set(base, found);
  return found;
}

/** The checkpoint key of Patient/$everything (its `_since`), beside the per-type ones. */
const EVERYTHING = '$everything';

/**
 * Everything to store: the Patient and the records of its compartment that changed since the
 * checkpoints (by $everything, or a search per type), and what they reference outside it.
 */
async function fetchRecords(session: SourceSession, o: Origin, patientId: string, since: Map<string, string>, issues: OperationOutcomeIssue[]) {
  const resources: Resource[] = [];
  // The checkpoints' candidates: the newest meta.lastUpdated among the matches of each query.
  const newest = new Map<string, string>();
  const seen = new Set<string>();
  const keep = (r: Resource | undefined, checkpoint?: string) => {
    if (!r?.resourceType || typeof r.id !== 'string') return;
    const key = `${r.resourceType}/${r.id}`;
    // (An instant that does not parse moves no checkpoint: the next request would carry it.)
    const lu = r.meta?.lastUpdated;
    const at = lu ? Date.parse(lu) : NaN;
    if (checkpoint && Number.isFinite(at) && (!newest.has(checkpoint) || at > Date.parse(newest.get(checkpoint)!))) newest.set(checkpoint, lu!);
    if (seen.has(key)) return;
    seen.add(key);
    resources.push(r);
  };
  const ownOrigin = new URL(o.base).origin;
  /**
   * Every page of a search, from its first URL, following `next` links on the system's own origin:
   * a `next` elsewhere (another host, port or scheme) ends the search with an issue, unrequested.
   */
  const pages = async (first: string, each: (entry: NonNullable<Bundle['entry']>[number]) => void) => {
    let url: string | undefined = first;
    for (let page = 0; url && page < MAX_PAGES; page++) {
      const bundle = (await session.getJson(url)) as Bundle;
      for (const e of bundle.entry ?? []) each(e);
      const next = bundle.link?.find((l) => l.relation === 'next')?.url;
      const nextUrl: URL | undefined = next && URL.canParse(next, url) ? new URL(next, url) : undefined;
      if (next && nextUrl?.origin !== ownOrigin) {
        issues.push({ severity: 'warning', code: 'security', diagnostics: `A next link of the search ${first.slice(o.base.length).split('?')[0]} pointed away from the system's own origin (${ownOrigin}); it was not followed, and the search ended there.` });
        return;
      }
      url = nextUrl?.toString();
    }
  };
  const patient = encodeURIComponent(patientId);
  const caps = await capabilities(session, o.base);
  let strategy: 'everything' | 'per-type' = caps.everything ? 'everything' : 'per-type';
  if (strategy === 'everything') {
    const cp = since.get(EVERYTHING);
    try {
      // Matches move the checkpoint; what they reference (search mode include) only comes along.
      await pages(`${o.base}/Patient/${patient}/$everything?_count=${PAGE_SIZE}${cp ? `&_since=${encodeURIComponent(cp)}` : ''}`, (e) =>
        keep(e.resource, e.search?.mode === 'include' || e.search?.mode === 'outcome' ? undefined : EVERYTHING),
      );
    } catch (err) {
      // A system that lists $everything but refuses it (scopes, a proxy): search type by type.
      if (!(err instanceof SourceError) || err.status < 400 || err.status >= 500 || err.status === 429) throw err;
      capabilitiesOf.set(o.base, { ...caps, at: Date.now(), everything: false });
      strategy = 'per-type';
    }
  }
  if (strategy === 'per-type') {
    // The Patient too only when it changed (US Core systems search Patient by _id): an unchanged
    // Patient would bring its practitioner and organization along again.
    for (const type of ['Patient', ...caps.types]) {
      const cp = since.get(type);
      await pages(`${o.base}/${type}?${type === 'Patient' ? '_id' : 'patient'}=${patient}&_count=${PAGE_SIZE}${cp ? `&_lastUpdated=gt${encodeURIComponent(cp)}` : ''}`, (e) => {
        if (e.search?.mode !== 'include' && e.search?.mode !== 'outcome') keep(e.resource, type);
      });
    }
  }
  // What the records refer to outside the patient's compartment and did not come along, fetched once.
  const outside = new Map<string, { type: string; id: string }>();
  for (const r of resources) for (const t of referencedTargets(o, r)) if (OUTSIDE_TYPES.includes(t.type) && !seen.has(`${t.type}/${t.id}`)) outside.set(`${t.type}/${t.id}`, t);
  for (const t of outside.values()) {
    try {
      keep((await session.getJson(`${o.base}/${t.type}/${encodeURIComponent(t.id)}`)) as Resource);
    } catch (err) {
      if (err instanceof NeedsReauth) throw err;
      // A reference the system cannot resolve stays its absolute URL.
    }
  }
  return { resources, newest, strategy };
}

async function store(deps: SyncDeps, o: Origin, conn: ConnectionRow, resources: Resource[], newest: Map<string, string>, connectionId: string, summary: RunSummary) {
  const scope = { partitionId: conn.app_id, ownerId: conn.user_id };
  await inTransaction(deps.pool, async (c) => {
    // A reference resolves when its target comes now or is in the user's records already.
    const here = new Set(resources.map((r) => `${r.resourceType}/${r.id}`));
    const targets = [...new Map(resources.flatMap((r) => referencedTargets(o, r)).filter((t) => !here.has(`${t.type}/${t.id}`)).map((t) => [`${t.type}/${t.id}`, t])).values()];
    const { rows } = await c.query<{ res_type: string; fhir_id: string }>(
      'SELECT res_type, fhir_id FROM hfj_resource WHERE partition_id = $1 AND owner_id = $2 AND res_deleted_at IS NULL AND (res_type, fhir_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))',
      [conn.app_id, conn.user_id, targets.map((t) => t.type), targets.map((t) => localId(o, t.type, t.id))],
    );
    const stored = new Set(rows.map((r) => `${r.res_type}/${r.fhir_id}`));
    const resolves = (type: string, id: string) => here.has(`${type}/${id}`) || stored.has(`${type}/${localId(o, type, id)}`);
    const local = resources.map((r) => toLocal(o, r, resolves));
    const result = await writeResources(deps, c, scope, local.map((r) => ({ type: r.resourceType, id: r.id!, resource: r })));
    summary.created = result.created;
    summary.updated = result.updated;
    summary.unchanged = result.unchanged;
    if (result.written) {
      const provenance: Provenance = {
        resourceType: 'Provenance',
        id: localId(o, 'Provenance', `sync-run-${summary.runId}`),
        target: result.changed.map((r) => ({ reference: `${r.type}/${r.id}` })),
        recorded: new Date().toISOString(),
        activity: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'UPDATE', display: 'revise' }] },
        agent: [
          {
            type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author', display: 'Author' }] },
            who: { identifier: { system: HEALTH_SYSTEM_ID, value: o.systemId }, display: o.systemName },
          },
          {
            type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'assembler', display: 'Assembler' }] },
            who: { display: 'Tributary' },
          },
        ],
        meta: { source: o.base },
      };
      await writeResources(deps, c, scope, [{ type: 'Provenance', id: provenance.id!, resource: provenance }]);
    }
    // The checkpoints move with what they cover, in the same transaction.
    if (newest.size) {
      await c.query(
        `INSERT INTO trb_sync_checkpoint (connection_id, res_type, last_updated) SELECT $1, * FROM unnest($2::text[], $3::text[])
         ON CONFLICT (connection_id, res_type) DO UPDATE SET last_updated = EXCLUDED.last_updated`,
        [connectionId, [...newest.keys()], [...newest.values()]],
      );
    }
  });
}
