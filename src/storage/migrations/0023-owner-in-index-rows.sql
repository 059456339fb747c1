-- Index rows carry the owner of their resource (the user whose record it is; NULL for an app's own
-- resources, the directory's and every resource written without users). A column of ours, not
-- HAPI's: HAPI reads and writes these tables without it (what it writes has no owner, as the
-- resources it writes have none).
--
-- Each search index gets the owner as its second column, after the hash (which already holds the
-- partition, that is the app): a user's search (a bearer token scopes every query to one record)
-- reads one contiguous range, the user's own rows of that value, and never another user's. An
-- app's search over all its users reads the same rows as before. No index is added: writes cost
-- what they did (a little more key width for owned rows).
ALTER TABLE hfj_spidx_string ADD COLUMN owner_id bigint;
ALTER TABLE hfj_spidx_token ADD COLUMN owner_id bigint;
ALTER TABLE hfj_spidx_date ADD COLUMN owner_id bigint;
ALTER TABLE hfj_spidx_number ADD COLUMN owner_id bigint;
ALTER TABLE hfj_spidx_quantity ADD COLUMN owner_id bigint;
ALTER TABLE hfj_spidx_quantity_nrml ADD COLUMN owner_id bigint;
ALTER TABLE hfj_spidx_uri ADD COLUMN owner_id bigint;
ALTER TABLE hfj_spidx_coords ADD COLUMN owner_id bigint;
ALTER TABLE hfj_res_link ADD COLUMN owner_id bigint;
ALTER TABLE hfj_res_param_present ADD COLUMN owner_id bigint;

-- The rows of resources that have an owner, from hfj_resource (only those: the others stay NULL).
UPDATE hfj_spidx_string x SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = x.res_id AND r.owner_id IS NOT NULL;
UPDATE hfj_spidx_token x SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = x.res_id AND r.owner_id IS NOT NULL;
UPDATE hfj_spidx_date x SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = x.res_id AND r.owner_id IS NOT NULL;
UPDATE hfj_spidx_number x SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = x.res_id AND r.owner_id IS NOT NULL;
UPDATE hfj_spidx_quantity x SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = x.res_id AND r.owner_id IS NOT NULL;
UPDATE hfj_spidx_quantity_nrml x SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = x.res_id AND r.owner_id IS NOT NULL;
UPDATE hfj_spidx_uri x SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = x.res_id AND r.owner_id IS NOT NULL;
UPDATE hfj_spidx_coords x SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = x.res_id AND r.owner_id IS NOT NULL;
UPDATE hfj_res_link x SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = x.src_resource_id AND r.owner_id IS NOT NULL;
UPDATE hfj_res_param_present x SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = x.res_id AND r.owner_id IS NOT NULL;

DROP INDEX idx_sp_string_hash_nrm;
CREATE INDEX idx_sp_string_hash_nrm_own ON hfj_spidx_string (hash_norm_prefix, owner_id, sp_value_normalized, res_id);
DROP INDEX idx_sp_string_hash_exct;
CREATE INDEX idx_sp_string_hash_exct_own ON hfj_spidx_string (hash_exact, owner_id, res_id);

DROP INDEX idx_sp_token_hash_s_v2;
CREATE INDEX idx_sp_token_hash_s_own ON hfj_spidx_token (hash_sys, owner_id, res_id);
DROP INDEX idx_sp_token_hash_sv_v2;
CREATE INDEX idx_sp_token_hash_sv_own ON hfj_spidx_token (hash_sys_and_value, owner_id, res_id);
DROP INDEX idx_sp_token_hash_v_v2;
CREATE INDEX idx_sp_token_hash_v_own ON hfj_spidx_token (hash_value, owner_id, res_id);

DROP INDEX idx_sp_date_hash_v2;
CREATE INDEX idx_sp_date_hash_own ON hfj_spidx_date (hash_identity, owner_id, sp_value_low, sp_value_high, res_id);
DROP INDEX idx_sp_date_hash_high_v2;
CREATE INDEX idx_sp_date_hash_high_own ON hfj_spidx_date (hash_identity, owner_id, sp_value_high, res_id);

DROP INDEX idx_sp_number_hash_val_v2;
CREATE INDEX idx_sp_number_hash_val_own ON hfj_spidx_number (hash_identity, owner_id, sp_value, res_id);

DROP INDEX idx_sp_quantity_hash_v2;
CREATE INDEX idx_sp_quantity_hash_own ON hfj_spidx_quantity (hash_identity, owner_id, sp_value, res_id);
DROP INDEX idx_sp_quantity_hash_un_v2;
CREATE INDEX idx_sp_quantity_hash_un_own ON hfj_spidx_quantity (hash_identity_and_units, owner_id, sp_value, res_id);
DROP INDEX idx_sp_quantity_hash_sysun_v2;
CREATE INDEX idx_sp_quantity_hash_sysun_own ON hfj_spidx_quantity (hash_identity_sys_units, owner_id, sp_value, res_id);
DROP INDEX idx_sp_qnty_nrml_hash_sysun_v2;
CREATE INDEX idx_sp_qnty_nrml_hash_sysun_own ON hfj_spidx_quantity_nrml (hash_identity_sys_units, owner_id, sp_value, res_id);

DROP INDEX idx_sp_uri_hash_uri_v2;
CREATE INDEX idx_sp_uri_hash_uri_own ON hfj_spidx_uri (hash_uri, owner_id, res_id);
DROP INDEX idx_sp_uri_hash_identity_v2;
CREATE INDEX idx_sp_uri_hash_identity_own ON hfj_spidx_uri (hash_identity, owner_id, sp_uri, res_id);

DROP INDEX idx_sp_coords_hash_v2;
CREATE INDEX idx_sp_coords_hash_own ON hfj_spidx_coords (hash_identity, owner_id, sp_latitude, sp_longitude, res_id);

-- A reference names its target: the links to it of one user, then their sources.
DROP INDEX idx_rl_tgt_fhir_id;
CREATE INDEX idx_rl_tgt_fhir_id_own ON hfj_res_link (target_fhir_id, target_resource_type, src_path, owner_id, src_resource_id) WHERE target_fhir_id IS NOT NULL;
DROP INDEX idx_rl_srcpath_tgturl;
CREATE INDEX idx_rl_srcpath_tgturl_own ON hfj_res_link (src_path, target_resource_url, partition_id, owner_id, src_resource_id) WHERE target_resource_url IS NOT NULL;

DROP INDEX idx_resparmpresent_hashpres;
CREATE INDEX idx_resparmpresent_hashpres_own ON hfj_res_param_present (hash_presence, owner_id, res_id);
