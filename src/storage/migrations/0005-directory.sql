-- The health-system directory: one row per distinct FHIR base URL (a "system"), with every
-- organization it serves. Tributary's own tables; the FHIR Organization/Endpoint view of them
-- comes later. Ids are short and derived from the normalized URL, so they never change across
-- re-imports.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE trb_system (
  id text PRIMARY KEY,
  -- The base URL with the trailing "/" trimmed and the host lower-cased: what makes a system distinct.
  url_normalized text NOT NULL UNIQUE,
  resource_url text NOT NULL,
  name text NOT NULL,
  vendor text,
  fhir_version text,
  status text NOT NULL DEFAULT 'unknown',
  checked_at timestamptz,
  -- What a search matches: the names, places, zips, NPIs, vendor and URL, lower-cased, accents
  -- removed (by the importer), one space between words.
  search_text text NOT NULL,
  -- SHA-256 of what an import wrote (name, vendor, version, organizations): equal means unchanged.
  content_sha256 text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_trb_system_search ON trb_system USING gin (search_text gin_trgm_ops);

CREATE TABLE trb_system_org (
  system_id text NOT NULL REFERENCES trb_system (id) ON DELETE CASCADE,
  ord integer NOT NULL,
  name text NOT NULL,
  npi text,
  line text,
  city text,
  state text,
  postal_code text,
  PRIMARY KEY (system_id, ord)
);
