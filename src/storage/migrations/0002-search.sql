-- Search: snapshots of sorted results, and the index of UCUM-normalized quantities.
-- Tributary's own table (not HAPI's): the ordered matches of a sorted search, so that following its
-- next links neither skips nor repeats an entry while other clients write. One row per search whose
-- results span more than one page; rows older than an hour are deleted. UNLOGGED: a snapshot is
-- worth no WAL or fsync (after a crash the table is empty and a client runs its search again).
CREATE UNLOGGED TABLE trb_search_snapshot (
  id uuid PRIMARY KEY,
  partition_id integer NOT NULL,
  -- SHA-256 of the search (type and criteria): a snapshot answers only the search that made it.
  query_hash varchar(64) NOT NULL,
  created timestamptz NOT NULL DEFAULT now(),
  total integer,
  res_ids bigint[] NOT NULL
);
CREATE INDEX idx_trb_search_snapshot_created ON trb_search_snapshot (created);


-- Searches in UCUM units look up the canonical value by (parameter, system, canonical unit).
CREATE INDEX idx_sp_qnty_nrml_hash_sysun_v2 ON hfj_spidx_quantity_nrml (hash_identity_sys_units, sp_value, res_id);
-- Search reads hfj_spidx_quantity_nrml only by (parameter, system, canonical unit): the index by
-- hash_identity alone would cost every ingested UCUM quantity an insert for nothing.
DROP INDEX idx_sp_qnty_nrml_hash_v2;
