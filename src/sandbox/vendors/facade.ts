/**
 * The pieces every vendor facade is made of (src/sandbox/vendors/*.ts): the request a facade
 * answers, the ordinary FHIR routes it reads from (in-process, with the caller's token), its
 * answer, the CapabilityStatement narrowed to what a vendor lists, and page tokens kept in memory.
 * A facade answers a GET at the vendor's public base; plugins/vendor-sandbox.ts wires it to HTTP.
 */

export interface VendorAnswer {
  status: number;
  body?: unknown;
  contentType?: string;
}

/** A JSON answer (FHIR JSON unless `contentType` says otherwise). */
export const jsonAnswer = (
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  contentType = 'application/fhir+json',
): FacadeAnswer => ({ status, headers, contentType, body: JSON.stringify(body) });

/** One request to the vendor's public base: `path` is what follows the base (`Observation`, `Patient/x`, `metadata`). */
export interface FacadeRequest {
  path: string;
  query: URLSearchParams;
  /** The public FHIR base (absolute, no trailing slash). */
  base: string;
  /** The caller's Accept header, where a vendor answers by it (a Binary as FHIR JSON or as its bytes). */
  accept?: string;
}

/** The ordinary FHIR routes, with the caller's Authorization: a GET of a path relative to `internalBase`. */
export interface InternalFhir {
  get(relative: string): Promise<{ status: number; contentType?: string; body: string }>;
  /** The absolute base the ordinary routes write in their links and fullUrls. */
  internalBase: string;
  /** The vendor's token endpoint, for the CapabilityStatement's oauth-uris. */
  tokenEndpoint?: string;
}

export interface FacadeAnswer {
  status: number;
  headers: Record<string, string>;
  contentType?: string;
  /** JSON or HTML text. */
  body?: string;
  /** Raw bytes instead of `body` (a Binary served as its own content type). */
  bytes?: Buffer;
}

/** An answer of the ordinary routes. */
export type InternalAnswer = Awaited<ReturnType<InternalFhir['get']>>;

/** An answer of the ordinary routes passed on as the vendor's: the internal base replaced by the public one. */
export const passOn = (a: InternalAnswer, fhir: InternalFhir, req: FacadeRequest, headers: Record<string, string> = {}): FacadeAnswer => ({
  status: a.status,
  headers,
  contentType: a.contentType,
  body: toPublic(a.body, fhir.internalBase, req.base),
});

/** A resource or Bundle of the ordinary routes with the internal base replaced by the public one. */
export const publicOf = <T>(r: T, fhir: InternalFhir, req: FacadeRequest): T =>
  JSON.parse(toPublic(JSON.stringify(r), fhir.internalBase, req.base)) as T;

/** One vendor's facade, one per process per sandbox system (it may remember pages and count calls). */
export interface VendorFacade {
  /** Answers one GET at the vendor's public base. */
  serve(req: FacadeRequest, fhir: InternalFhir): Promise<FacadeAnswer>;
  /** Ends every page session, cursor or continuation now (the admin's expire-page-tokens); answers how many. */
  expirePages(): number;
  /** A call to the vendor's token endpoint, for vendors that count them (eCW's per-minute limit): an answer refuses it. */
  tokenCall?(): FacadeAnswer | undefined;
}

/** The internal base replaced by the public one, everywhere in a JSON text (links, fullUrls). */
export const toPublic = (text: string, internalBase: string, base: string): string => text.split(internalBase).join(base);

/** The CapabilityStatement with the types (`types`) and search parameters (`keep`; type `*` for the system-wide ones) a vendor lists, and its own token endpoint in oauth-uris. */
export function capabilityFor(
  text: string,
  keep: (type: string, param: string) => boolean,
  tokenEndpoint?: string,
  types?: readonly string[],
): unknown {
  const cs = JSON.parse(text) as {
    rest?: {
      resource?: { type: string; searchParam?: { name: string }[] }[];
      searchParam?: { name: string }[];
      security?: { extension?: { extension?: { url: string; valueUri?: string }[] }[] };
    }[];
  };
  for (const rest of cs.rest ?? []) {
    if (types && rest.resource) rest.resource = rest.resource.filter((r) => types.includes(r.type));
    // The system-wide parameters: those every type keeps.
    if (rest.searchParam) rest.searchParam = rest.searchParam.filter((p) => keep('*', p.name));
    for (const r of rest.resource ?? []) {
      if (r.searchParam) r.searchParam = r.searchParam.filter((p) => keep(r.type, p.name));
    }
    for (const ext of rest.security?.extension ?? [])
      for (const e of ext.extension ?? []) if (e.url === 'token' && tokenEndpoint) e.valueUri = tokenEndpoint;
  }
  return cs;
}

/** Pages remembered by their public token (athena's cursor, MEDITECH's continue): the internal next link each stands for. */
export class PageTokens {
  private readonly pages = new Map<string, string>();
  private readonly max: number;
  constructor(max = 20_000) {
    this.max = max;
  }
  set(key: string, internalNext: string): void {
    this.pages.delete(key);
    this.pages.set(key, internalNext);
    // The oldest go first: a Map keeps insertion order.
    while (this.pages.size > this.max) this.pages.delete(this.pages.keys().next().value!);
  }
  get(key: string): string | undefined {
    return this.pages.get(key);
  }
  /** Ends every page token now (the admin's expire-page-tokens). */
  clear(): number {
    const n = this.pages.size;
    this.pages.clear();
    return n;
  }
}

/** A query's parameters in a fixed order, without the paging token: the key its pages are kept under. */
export const queryKey = (type: string, params: URLSearchParams, token: string): string =>
  `${type}?${[...params]
    .filter(([k]) => k !== token)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&')}`;
