-- The sync's progress (src/sync/store.ts), page by page. Per connection and query key (`Observation`,
-- `Observation?category=laboratory`, `$everything`, `Patient`): `since`, the instant the next
-- increment asks changes after (our own fetch time of the last complete pass, less a margin, never
-- the source's meta.lastUpdated); `next`, the page link a pass cut off goes on with; `pass_started_at`,
-- when the pass under way began (its `since` when it completes).
CREATE TABLE trb_sync_query (
  connection_id bigint NOT NULL REFERENCES trb_connection (id) ON DELETE CASCADE,
  query_key text NOT NULL,
  since timestamptz,
  next text,
  pass_started_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (connection_id, query_key)
);

-- Per connection and type (and `$everything`), as the last run that asked for it saw it: `fetched`
-- (all or some of its searches answered), `refused` (why: refusal = {kind, status, code,
-- diagnostics, query}), `not-granted` (the scopes granted do not cover it; not asked), `failed`
-- (error). `refused_variants`: searches of it refused while others answered (Epic's suppressed
-- categories). `last_full_at`: when its last full fetch completed (the mode of the next runs).
CREATE TABLE trb_sync_type (
  connection_id bigint NOT NULL REFERENCES trb_connection (id) ON DELETE CASCADE,
  res_type text NOT NULL,
  status text NOT NULL CHECK (status IN ('fetched', 'refused', 'not-granted', 'failed')),
  fetched integer NOT NULL DEFAULT 0,
  refusal jsonb,
  refused_variants jsonb NOT NULL DEFAULT '[]',
  error text,
  last_full_at timestamptz,
  last_run_id bigint,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (connection_id, res_type)
);

-- The checkpoints from the source's meta.lastUpdated give way to trb_sync_query (a connection's next
-- run is a full fetch of every type: content comparison makes it cost no version).
DROP TABLE trb_sync_checkpoint;

-- A run may be `skipped` (another run of the connection held its lock); `deleted`: the records it
-- deleted because a full fetch no longer returned them.
ALTER TABLE trb_sync_run DROP CONSTRAINT trb_sync_run_status_check;
ALTER TABLE trb_sync_run ADD CONSTRAINT trb_sync_run_status_check CHECK (status IN ('running', 'succeeded', 'failed', 'needs_reauth', 'skipped'));
ALTER TABLE trb_sync_run ADD COLUMN deleted integer NOT NULL DEFAULT 0;
