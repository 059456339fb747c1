-- De-duplication (src/dedup): links between a person's records from two of their sources that are
-- one record, each with its rule, score and when it was made; the person's (or app's) decisions
-- kept beside them. The records themselves are never changed.

-- owner_id (the person) leads every key: a person's links are theirs alone, and stay together.
CREATE TABLE trb_dedup_link (
  owner_id bigint NOT NULL,
  partition_id int NOT NULL,
  res_type text NOT NULL,
  -- The two resources (hfj_resource.res_id), the smaller first.
  a_res_id bigint NOT NULL,
  b_res_id bigint NOT NULL,
  rule text NOT NULL,
  score real NOT NULL,
  -- auto: the rules made it; confirmed: kept whatever the rules say; rejected: never made again.
  status text NOT NULL DEFAULT 'auto' CHECK (status IN ('auto', 'confirmed', 'rejected')),
  made_at timestamptz NOT NULL DEFAULT now(),
  decided_at timestamptz,
  PRIMARY KEY (owner_id, a_res_id, b_res_id),
  CHECK (a_res_id < b_res_id)
);
CREATE INDEX trb_dedup_link_b ON trb_dedup_link (owner_id, b_res_id);

-- Where each person's de-duplication stands: a run with nothing new since costs one look.
CREATE TABLE trb_dedup_state (
  owner_id bigint PRIMARY KEY,
  partition_id int NOT NULL,
  -- The newest change (res_updated) among the person's records, and how many there were, when it last ran.
  changed_through timestamptz,
  resources int NOT NULL,
  -- The rules it ran with (a hash of their settings): a change of rules runs it again.
  rules text NOT NULL,
  ran_at timestamptz NOT NULL DEFAULT now()
);
