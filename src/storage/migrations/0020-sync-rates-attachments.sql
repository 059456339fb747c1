-- A system's own request limit, when the directory knows it (eClinicalWorks: 250 calls a minute per
-- practice, token calls included); the sync keeps under it. Null: SYNC_SYSTEM_RATE a second.
ALTER TABLE trb_system ADD COLUMN rate_limit_per_minute integer CHECK (rate_limit_per_minute > 0);

-- The request rate of each system, shared by every worker process (src/sync/rate-limit.ts), keyed by
-- its FHIR base as trb_system.url_normalized writes it: `tat`, the instant the next request may go
-- (GCRA's theoretical arrival time); `blocked_until`, a 429's end (nothing goes before it);
-- `slow_until`, the end of the halved rate that follows a 429.
CREATE TABLE trb_system_rate (
  system_key text PRIMARY KEY,
  tat timestamptz NOT NULL,
  blocked_until timestamptz,
  slow_until timestamptz
);

-- Note contents (src/sync/attachments.ts): per connection and attachment URL (its SHA-256, hex), where
-- it stands. `stored`: in the user's records as Binary/binary_id; `failed`: tried `tries` times, the
-- last with `error`, again no sooner than next_try_at; `too-large`: past SYNC_ATTACHMENT_MAX_BYTES,
-- not fetched again.
CREATE TABLE trb_sync_attachment (
  connection_id bigint NOT NULL REFERENCES trb_connection (id) ON DELETE CASCADE,
  url_hash text NOT NULL,
  status text NOT NULL CHECK (status IN ('stored', 'failed', 'too-large')),
  binary_id text,
  bytes integer,
  http_status integer,
  tries integer NOT NULL DEFAULT 0,
  next_try_at timestamptz,
  error text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (connection_id, url_hash)
);
