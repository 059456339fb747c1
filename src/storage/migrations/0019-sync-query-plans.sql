-- What the sync learned about asking each system (src/sync/plan.ts), per type: the searches that
-- work (query keys such as `Observation?category=laboratory`) and those refused with why, the
-- `_lastUpdated` prefix it takes, its page size (under res_type `*`; 0: send no `_count`), and for
-- `$everything` whether `_since` is honoured and how many matches its last full fetch had.
-- Learned again after 7 days.
CREATE TABLE trb_sync_query_plan (
  system_id text NOT NULL REFERENCES trb_system (id) ON DELETE CASCADE,
  res_type text NOT NULL,
  working text[] NOT NULL DEFAULT '{}',
  refused jsonb NOT NULL DEFAULT '{}',
  page_size integer CHECK (page_size >= 0),
  since_prefix text CHECK (since_prefix IN ('gt', 'ge', 'none')),
  since_honoured boolean,
  full_count integer,
  learned_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (system_id, res_type)
);
