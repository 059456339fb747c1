-- One row, written by every write of a searchable SearchParameter (plugins/core.ts) in the write's
-- own statement, whose RETURNING NOTIFYs trb_search_parameters: the notification is sent as the
-- write commits, never before (a write made outside a transaction is one statement), and every
-- process then adds the stored SearchParameters it does not have yet.
CREATE TABLE trb_search_parameter_change (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  changed_at timestamptz NOT NULL
);
