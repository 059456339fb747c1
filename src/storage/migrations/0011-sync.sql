-- The sync: a connection's records flow into the user's. Per connection and resource type, the
-- source's newest meta.lastUpdated stored so far (the checkpoint of the next increment); it moves
-- only after what came before it is committed.
CREATE TABLE trb_sync_checkpoint (
  connection_id bigint NOT NULL REFERENCES trb_connection (id) ON DELETE CASCADE,
  res_type text NOT NULL,
  last_updated text NOT NULL,
  PRIMARY KEY (connection_id, res_type)
);

-- Each sync run: when, how it ended, what it counted, and the resources it could not take (with why).
CREATE TABLE trb_sync_run (
  id bigserial PRIMARY KEY,
  connection_id bigint NOT NULL REFERENCES trb_connection (id) ON DELETE CASCADE,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed', 'needs_reauth')),
  fetched integer NOT NULL DEFAULT 0,
  created integer NOT NULL DEFAULT 0,
  updated integer NOT NULL DEFAULT 0,
  unchanged integer NOT NULL DEFAULT 0,
  failed integer NOT NULL DEFAULT 0,
  error text,
  -- OperationOutcome issues of the resources skipped.
  issues jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX idx_trb_sync_run_connection ON trb_sync_run (connection_id, started_at DESC);

ALTER TABLE trb_connection ADD COLUMN last_success_at timestamptz;
