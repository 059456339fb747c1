-- Index rows found from their resources, and one index less.
--
-- A search anchored on a patient (patient=X&code=Y and every other form of it; see
-- src/search/conditions.ts) has the ids of the patient's resources first, then keeps those with the
-- code. Where the rows have no owner to range over (an app's own records, FHIR_AUTH=off), that ran
-- through the res_id index and read every index row of the patient's resources from the table to
-- check its hash: 2,270 token rows for 45 matches, 117 buffers. With the hash in the res_id index
-- the check is made in the index (an index-only scan); for dates the values too, which the
-- date-sorted page also sorts by. The res_id indexes keep serving the deletes of a resource's rows.
CREATE INDEX IF NOT EXISTS idx_sp_token_resid_hash ON hfj_spidx_token (res_id, hash_sys_and_value);
DROP INDEX IF EXISTS idx_sp_token_resid;
CREATE INDEX IF NOT EXISTS idx_sp_date_resid_hash ON hfj_spidx_date (res_id, hash_identity, sp_value_low, sp_value_high);
DROP INDEX IF EXISTS idx_sp_date_resid_v2;

-- HAPI's idx_rl_tgt_v2 (a link's target by res_id) serves no query of ours: every reference search,
-- include, compartment and revinclude finds links by target_fhir_id (idx_rl_tgt_fhir_id_own), which
-- holds the target's id before the target exists, and the owner. It was 6% of the store (426 MB
-- of 6.9 GB at 1,000,000 resources) and one more index entry for every link written.
-- target_resource_id is still filled in for HAPI; a HAPI server searching these tables by it would
-- want the index back (CREATE INDEX idx_rl_tgt_v2 ON hfj_res_link (target_resource_id, src_path,
-- src_resource_id, target_resource_type, partition_id) WHERE target_resource_id IS NOT NULL).
DROP INDEX IF EXISTS idx_rl_tgt_v2;
