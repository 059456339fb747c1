-- How each sync run fetched (`everything`: Patient/$everything; `per-type`: a search per type) and
-- how many requests it sent (retries included); runs by start time, for the operators' summary.
ALTER TABLE trb_sync_run ADD COLUMN strategy text, ADD COLUMN requests integer NOT NULL DEFAULT 0;
CREATE INDEX idx_trb_sync_run_started ON trb_sync_run (started_at);
