/**
 * Tributary's client registrations at health systems, set by the operator: per directory system
 * or per EHR vendor (a system's own wins). From the CLI (`npx tributary connect register`), from
 * a JSON file named by CLIENT_REGISTRATIONS_FILE (read at every start), and by the sandbox systems
 * for themselves. Secrets are sealed with the configured key, bound to the client_id.
 *
 * A vendor-wide registration serves every directory system of the vendor, wherever its base URL
 * points, so it names the hosts it may be sent to (`hosts`): its secret or client assertion goes
 * only to token and revocation endpoints at those hosts (see hostAllowed).
 */
import fs from 'node:fs';
import type pg from 'pg';
import type { Vault } from '../auth/vault.ts';
import type { Registration } from './client.ts';
import * as statements from './sql.ts';

export const AUTH_METHODS: readonly Registration['authMethod'][] = ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt'];

export interface RegistrationInput {
  systemId?: string;
  vendor?: string;
  clientId: string;
  authMethod: Registration['authMethod'];
  secret?: string;
  scope?: string;
  /** Where it may be used: host names, `*.example.com` for any host under example.com. Required with `vendor`. */
  hosts?: string[];
}

const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const HOST_PATTERN = new RegExp(`^(?:\\*\\.)?${LABEL}(?:\\.${LABEL})*$`);
const IP_LITERAL = /^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:.]+\])$/;

/** What is wrong with a host a registration names, or undefined. */
export function hostProblem(h: string): string | undefined {
  if (h.length > 253 || (!HOST_PATTERN.test(h) && !IP_LITERAL.test(h)))
    return `${h.slice(0, 100)} is not a host name (lower case, such as fhir.epic.com or *.epic.com, no scheme, port or path).`;
  if (h.startsWith('*.') && !h.slice(2).includes('.')) return `${h} covers a whole top-level domain: name the vendor's own domain (*.epic.com).`;
  return undefined;
}

/**
 * Whether a registration naming `hosts` may be sent to `hostname` (a URL's, lower case):
 * equal to one of them, or under the domain of a `*.` one (`*.epic.com`: fhir.epic.com,
 * a.b.epic.com; not epic.com itself).
 */
export function hostAllowed(hostname: string, hosts: readonly string[]): boolean {
  const h = hostname.toLowerCase();
  return hosts.some((p) => (p.startsWith('*.') ? h.endsWith(p.slice(1)) && h.length > p.length - 1 : h === p));
}

/** What is wrong with a registration, or undefined. */
export function registrationProblem(r: RegistrationInput): string | undefined {
  if (!r.systemId === !r.vendor) return 'Name a system (system_id) or a vendor, one of the two.';
  if (!r.clientId || r.clientId.length > 500) return 'client_id is required (at most 500 characters).';
  if (!AUTH_METHODS.includes(r.authMethod)) return `auth_method is one of ${AUTH_METHODS.join(', ')}.`;
  const needsSecret = r.authMethod === 'client_secret_basic' || r.authMethod === 'client_secret_post';
  if (needsSecret !== !!r.secret) return needsSecret ? `${r.authMethod} needs the client secret.` : `${r.authMethod} takes no client secret.`;
  if (r.scope !== undefined && (r.scope.length > 2000 || !r.scope.trim())) return 'scope, when given, is a space-separated list of scopes.';
  if (r.vendor && !r.hosts?.length)
    return `A registration for a whole vendor names the hosts it may be sent to (hosts: the issuer or token-endpoint hosts, such as fhir.epic.com,*.epic.com): every directory system of ${r.vendor.slice(0, 100)} would receive its credentials otherwise.`;
  if (r.hosts && (r.hosts.length > 50 || r.hosts.length === 0)) return 'hosts, when given, are 1 to 50 host names.';
  return r.hosts?.map(hostProblem).find((p) => p !== undefined);
}

/** Adds or replaces the registration of a system or a vendor. */
export async function saveRegistration(db: pg.Pool | pg.PoolClient, vault: Vault, r: RegistrationInput): Promise<void> {
  const problem = registrationProblem(r);
  if (problem) throw new Error(problem);
  const sealed = r.secret ? vault.encrypt(r.secret, r.clientId, 'registration-secret') : null;
  const key = r.systemId ? 'system_id' : 'vendor';
  await db.query(statements.saveRegistration(key, (r.systemId ?? r.vendor)!, r.clientId, r.authMethod, sealed, r.scope ?? null, r.hosts ?? null));
}

/** Every registration, never with its secret. */
export async function listRegistrations(db: pg.Pool): Promise<
  {
    system_id: string | null;
    vendor: string | null;
    client_id: string;
    auth_method: string;
    scope: string | null;
    hosts: string[] | null;
    has_secret: boolean;
  }[]
> {
  const { rows } = await db.query(statements.listRegistrations());
  return rows;
}

export async function removeRegistration(db: pg.Pool, by: { systemId?: string; vendor?: string }): Promise<boolean> {
  const { rowCount } = await db.query(statements.removeRegistration(by.systemId ?? null, by.vendor ?? null));
  return (rowCount ?? 0) > 0;
}

/**
 * The registrations of a JSON file: `[{"system_id" | "vendor", "client_id", "auth_method",
 * "client_secret"?, "scope"?, "hosts"? (a list; required with "vendor")}]`. Throws with the entry and what is wrong with it.
 */
export function readRegistrationsFile(file: string): RegistrationInput[] {
  let doc: unknown;
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  if (!Array.isArray(doc)) throw new Error(`${file}: a JSON list of registrations is expected.`);
  return doc.map((e: Record<string, unknown>, i) => {
    const s = (k: string) => (typeof e?.[k] === 'string' ? (e[k] as string) : undefined);
    const hosts =
      e?.hosts === undefined ? undefined : Array.isArray(e.hosts) && e.hosts.every((h) => typeof h === 'string') ? (e.hosts as string[]) : null;
    if (hosts === null) throw new Error(`${file}, entry ${i}: hosts is a list of host names, such as ["fhir.epic.com", "*.epic.com"].`);
    const r: RegistrationInput = {
      systemId: s('system_id'),
      vendor: s('vendor'),
      clientId: s('client_id') ?? '',
      authMethod: s('auth_method') as Registration['authMethod'],
      secret: s('client_secret'),
      scope: s('scope'),
      hosts,
    };
    const problem = registrationProblem(r);
    if (problem) throw new Error(`${file}, entry ${i}: ${problem}`);
    return r;
  });
}
