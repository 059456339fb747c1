-- Which directory lists were imported, and when: autoload imports the shipped lists
-- (directory/lantern) when no row names their content hash, so a start that finds other systems
-- already there (the sandboxes) still imports them, and an upgrade that ships changed lists
-- imports them again. A row per import; the counts are the import's summary.
CREATE TABLE trb_directory_import (
  id bigserial PRIMARY KEY,
  -- 'shipped' for the lists beside the code.
  source text NOT NULL,
  -- SHA-256 over the files' names and contents, in name order.
  content_sha256 text NOT NULL,
  files integer NOT NULL,
  systems integer NOT NULL,
  added integer NOT NULL,
  updated integer NOT NULL,
  rejected_rows integer NOT NULL,
  imported_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_trb_directory_import_source ON trb_directory_import (source, content_sha256);
