-- Bulk Data exports ($export): one row per kick-off, the NDJSON files it made and their bytes.
-- The files are kept here, in the database every API process shares, so that any process can
-- answer the status and the downloads (no shared disk, no object store to set up); they are
-- removed when the export expires or is deleted.
CREATE TABLE trb_export (
  id uuid PRIMARY KEY,
  -- The app (its partition; 0 with FHIR_AUTH=off, which no trb_app row holds, hence no foreign key).
  app_id integer NOT NULL,
  -- The user whose token started it (their records only); null: the app's credentials.
  user_id bigint REFERENCES trb_user (id) ON DELETE CASCADE,
  -- The kick-off as the client sent it (the manifest's `request`).
  request text NOT NULL,
  -- What to export (src/export/request.ts ExportRequest) and the token's scopes.
  params jsonb NOT NULL,
  status text NOT NULL CHECK (status IN ('accepted', 'in-progress', 'completed', 'failed')),
  -- The manifest's transactionTime: everything up to it, nothing after it.
  transaction_time timestamptz NOT NULL,
  progress text,
  exported bigint NOT NULL DEFAULT 0,
  error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  expires_at timestamptz NOT NULL
);
CREATE INDEX idx_export_app ON trb_export (app_id, status);
CREATE INDEX idx_export_expires ON trb_export (expires_at);

-- One NDJSON file of an export: the resources of one type (a type's later files when it passes
-- the file size), or the OperationOutcomes of its errors.
CREATE TABLE trb_export_file (
  export_id uuid NOT NULL REFERENCES trb_export (id) ON DELETE CASCADE,
  file_no integer NOT NULL,
  kind text NOT NULL CHECK (kind IN ('output', 'error')),
  res_type text NOT NULL,
  count integer NOT NULL,
  bytes bigint NOT NULL,
  PRIMARY KEY (export_id, file_no)
);

-- A file's bytes, about 1 MiB a part, in order. Not compressed by TOAST: NDJSON of FHIR compresses
-- well, but compressing every part would cost the export more CPU than its disk is worth for files
-- that live hours.
CREATE TABLE trb_export_part (
  export_id uuid NOT NULL,
  file_no integer NOT NULL,
  seq integer NOT NULL,
  body bytea NOT NULL,
  PRIMARY KEY (export_id, file_no, seq),
  FOREIGN KEY (export_id) REFERENCES trb_export (id) ON DELETE CASCADE
);
ALTER TABLE trb_export_part ALTER COLUMN body SET STORAGE EXTERNAL;
