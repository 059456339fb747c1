-- The directory as FHIR resources: an Endpoint per system and an Organization per distinct
-- organization, in partition -2 (every app may read it; nothing writes it through the API).
-- org_id names the Organization an organization row becomes (from its NPI, else its name and zip);
-- fhir_sha256 is the content_sha256 the system's FHIR resources were last written for, so the view
-- catches up after any import, interrupted or not.
ALTER TABLE trb_system ADD COLUMN fhir_sha256 text;
ALTER TABLE trb_system_org ADD COLUMN org_id text;
CREATE INDEX idx_trb_system_org_org ON trb_system_org (org_id);
CREATE INDEX idx_trb_system_view ON trb_system (id) WHERE fhir_sha256 IS DISTINCT FROM content_sha256;
-- Directories imported before this migration have no org_id: they are emptied, and the shipped
-- lists load again on the next start (DIRECTORY_AUTOLOAD); other lists must be imported again.
DELETE FROM trb_system;

-- Directory search matches in memory (src/directory/search.ts): each process keeps an index of the
-- systems' words, and rebuilds it when this version differs from its own. Every import that
-- changes a system bumps it, in its transaction. The text and trigram index SQL searched go.
CREATE TABLE trb_directory_state (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  version bigint NOT NULL
);
INSERT INTO trb_directory_state (version) VALUES (1);
ALTER TABLE trb_system DROP COLUMN search_text;
