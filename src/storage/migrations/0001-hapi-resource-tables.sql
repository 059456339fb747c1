-- HAPI FHIR JPA's resource tables (see shared/hapi-storage.md). Names and columns follow HAPI;
-- indexes are the ones our SQL uses. partition_id 0 is the default partition.
-- Unlike HAPI, the index, link and tag tables have no foreign key to hfj_resource: every row
-- is written in the same statement as its resource's version, and the per-row key checks (a
-- row lock on hfj_resource for each of ~30 index rows) were the largest cost of ingest.

CREATE SEQUENCE IF NOT EXISTS seq_resource_id INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_resource_history_id INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_spidx_string INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_spidx_token INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_spidx_date INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_spidx_number INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_spidx_quantity INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_spidx_quantity_nrml INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_spidx_uri INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_spidx_coords INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_reslink_id INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_tagdef_id INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_restag_id INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_historytag_id INCREMENT 50;
CREATE SEQUENCE IF NOT EXISTS seq_respardate_id INCREMENT 50;

CREATE TABLE hfj_resource (
  res_id bigint PRIMARY KEY,
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  res_type varchar(40) NOT NULL,
  fhir_id varchar(64) NOT NULL,
  res_ver bigint NOT NULL,
  res_version varchar(7) NOT NULL DEFAULT 'R4',
  res_published timestamptz NOT NULL,
  res_updated timestamptz NOT NULL,
  res_deleted_at timestamptz,
  hash_sha256 varchar(64),
  has_tags boolean NOT NULL DEFAULT false,
  res_language varchar(20),
  sp_index_status smallint,
  sp_has_links boolean NOT NULL DEFAULT false,
  sp_coords_present boolean NOT NULL DEFAULT false,
  sp_date_present boolean NOT NULL DEFAULT false,
  sp_number_present boolean NOT NULL DEFAULT false,
  sp_quantity_present boolean NOT NULL DEFAULT false,
  sp_quantity_nrml_present boolean NOT NULL DEFAULT false,
  sp_string_present boolean NOT NULL DEFAULT false,
  sp_token_present boolean NOT NULL DEFAULT false,
  sp_uri_present boolean NOT NULL DEFAULT false,
  sp_cmpstr_uniq_present boolean NOT NULL DEFAULT false,
  sp_cmptoks_present boolean NOT NULL DEFAULT false,
  search_url_present boolean NOT NULL DEFAULT false
);
-- HAPI's IDX_RES_TYPE_FHIR_ID, per partition (each app is a partition).
CREATE UNIQUE INDEX idx_res_type_fhir_id ON hfj_resource (partition_id, res_type, fhir_id);
-- No other index on (partition_id, res_type, ...): on a freshly loaded table, before statistics
-- exist, PostgreSQL could pick it over the unique one for a read by id.

CREATE TABLE hfj_res_ver (
  pid bigint PRIMARY KEY,
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  res_id bigint NOT NULL REFERENCES hfj_resource (res_id),
  res_type varchar(40) NOT NULL,
  res_ver bigint NOT NULL,
  res_version varchar(7) NOT NULL DEFAULT 'R4',
  res_encoding varchar(5) NOT NULL,
  res_text bytea,
  res_text_vc text,
  res_published timestamptz NOT NULL,
  res_updated timestamptz NOT NULL,
  res_deleted_at timestamptz,
  has_tags boolean NOT NULL DEFAULT false,
  source_uri varchar(2000),
  request_id varchar(16)
);
CREATE UNIQUE INDEX idx_resver_id_ver ON hfj_res_ver (res_id, res_ver);
CREATE INDEX idx_resver_type_date ON hfj_res_ver (partition_id, res_type, res_updated, pid);
CREATE INDEX idx_resver_date ON hfj_res_ver (partition_id, res_updated, pid);

CREATE TABLE hfj_tag_def (
  tag_id bigint PRIMARY KEY,
  tag_type smallint NOT NULL,
  tag_system varchar(200),
  tag_code varchar(200),
  tag_display varchar(200),
  tag_version varchar(30),
  tag_user_selected boolean
);
CREATE UNIQUE INDEX idx_tagdef_typesyscodevers ON hfj_tag_def (tag_type, coalesce(tag_system, ''), coalesce(tag_code, ''), coalesce(tag_version, ''), coalesce(tag_display, ''));

CREATE TABLE hfj_res_tag (
  pid bigint PRIMARY KEY,
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  res_id bigint NOT NULL,
  res_type varchar(40) NOT NULL,
  tag_id bigint NOT NULL REFERENCES hfj_tag_def (tag_id)
);
CREATE UNIQUE INDEX idx_restag_tagid ON hfj_res_tag (res_id, tag_id);
CREATE INDEX idx_restag_tag ON hfj_res_tag (tag_id, res_id);

CREATE TABLE hfj_history_tag (
  pid bigint PRIMARY KEY,
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  res_ver_pid bigint NOT NULL REFERENCES hfj_res_ver (pid),
  res_id bigint NOT NULL,
  res_type varchar(40) NOT NULL,
  tag_id bigint NOT NULL REFERENCES hfj_tag_def (tag_id)
);
CREATE UNIQUE INDEX idx_reshisttag_tagid ON hfj_history_tag (res_ver_pid, tag_id);

CREATE TABLE hfj_spidx_string (
  sp_id bigint PRIMARY KEY DEFAULT nextval('seq_spidx_string'),
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  res_id bigint NOT NULL,
  res_type varchar(40) NOT NULL,
  sp_name varchar(100) NOT NULL,
  sp_missing boolean NOT NULL DEFAULT false,
  sp_updated timestamptz,
  hash_identity bigint,
  sp_value_exact varchar(200),
  sp_value_normalized varchar(200),
  hash_exact bigint,
  hash_norm_prefix bigint
);
CREATE INDEX idx_sp_string_hash_nrm ON hfj_spidx_string (hash_norm_prefix, sp_value_normalized, res_id);
CREATE INDEX idx_sp_string_hash_exct ON hfj_spidx_string (hash_exact, res_id);
CREATE INDEX idx_sp_string_resid ON hfj_spidx_string (res_id);

CREATE TABLE hfj_spidx_token (
  sp_id bigint PRIMARY KEY DEFAULT nextval('seq_spidx_token'),
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  res_id bigint NOT NULL,
  res_type varchar(40) NOT NULL,
  sp_name varchar(100) NOT NULL,
  sp_missing boolean NOT NULL DEFAULT false,
  sp_updated timestamptz,
  hash_identity bigint,
  sp_system varchar(200),
  sp_value varchar(200),
  hash_sys bigint,
  hash_sys_and_value bigint,
  hash_value bigint
);
CREATE INDEX idx_sp_token_hash_s_v2 ON hfj_spidx_token (hash_sys, res_id);
CREATE INDEX idx_sp_token_hash_sv_v2 ON hfj_spidx_token (hash_sys_and_value, res_id);
CREATE INDEX idx_sp_token_hash_v_v2 ON hfj_spidx_token (hash_value, res_id);
CREATE INDEX idx_sp_token_resid ON hfj_spidx_token (res_id);

CREATE TABLE hfj_spidx_date (
  sp_id bigint PRIMARY KEY DEFAULT nextval('seq_spidx_date'),
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  res_id bigint NOT NULL,
  res_type varchar(40) NOT NULL,
  sp_name varchar(100) NOT NULL,
  sp_missing boolean NOT NULL DEFAULT false,
  sp_updated timestamptz,
  hash_identity bigint,
  sp_value_low timestamptz,
  sp_value_high timestamptz,
  sp_value_low_date_ordinal integer,
  sp_value_high_date_ordinal integer
);
CREATE INDEX idx_sp_date_hash_v2 ON hfj_spidx_date (hash_identity, sp_value_low, sp_value_high, res_id);
CREATE INDEX idx_sp_date_hash_high_v2 ON hfj_spidx_date (hash_identity, sp_value_high, res_id);
CREATE INDEX idx_sp_date_resid_v2 ON hfj_spidx_date (res_id);

CREATE TABLE hfj_spidx_number (
  sp_id bigint PRIMARY KEY DEFAULT nextval('seq_spidx_number'),
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  res_id bigint NOT NULL,
  res_type varchar(40) NOT NULL,
  sp_name varchar(100) NOT NULL,
  sp_missing boolean NOT NULL DEFAULT false,
  sp_updated timestamptz,
  hash_identity bigint,
  sp_value numeric
);
CREATE INDEX idx_sp_number_hash_val_v2 ON hfj_spidx_number (hash_identity, sp_value, res_id);
CREATE INDEX idx_sp_number_resid_v2 ON hfj_spidx_number (res_id);

CREATE TABLE hfj_spidx_quantity (
  sp_id bigint PRIMARY KEY DEFAULT nextval('seq_spidx_quantity'),
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  res_id bigint NOT NULL,
  res_type varchar(40) NOT NULL,
  sp_name varchar(100) NOT NULL,
  sp_missing boolean NOT NULL DEFAULT false,
  sp_updated timestamptz,
  hash_identity bigint,
  sp_system varchar(200),
  sp_units varchar(200),
  sp_value numeric,
  hash_identity_and_units bigint,
  hash_identity_sys_units bigint
);
CREATE INDEX idx_sp_quantity_hash_v2 ON hfj_spidx_quantity (hash_identity, sp_value, res_id);
CREATE INDEX idx_sp_quantity_hash_un_v2 ON hfj_spidx_quantity (hash_identity_and_units, sp_value, res_id);
CREATE INDEX idx_sp_quantity_hash_sysun_v2 ON hfj_spidx_quantity (hash_identity_sys_units, sp_value, res_id);
CREATE INDEX idx_sp_quantity_resid_v2 ON hfj_spidx_quantity (res_id);

-- UCUM-normalized quantities (filled by the search work; same columns as hfj_spidx_quantity).
CREATE TABLE hfj_spidx_quantity_nrml (LIKE hfj_spidx_quantity INCLUDING DEFAULTS);
ALTER TABLE hfj_spidx_quantity_nrml ALTER COLUMN sp_id SET DEFAULT nextval('seq_spidx_quantity_nrml');
ALTER TABLE hfj_spidx_quantity_nrml ADD PRIMARY KEY (sp_id);
CREATE INDEX idx_sp_qnty_nrml_hash_v2 ON hfj_spidx_quantity_nrml (hash_identity, sp_value, res_id);
CREATE INDEX idx_sp_qnty_nrml_resid_v2 ON hfj_spidx_quantity_nrml (res_id);

CREATE TABLE hfj_spidx_uri (
  sp_id bigint PRIMARY KEY DEFAULT nextval('seq_spidx_uri'),
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  res_id bigint NOT NULL,
  res_type varchar(40) NOT NULL,
  sp_name varchar(100) NOT NULL,
  sp_missing boolean NOT NULL DEFAULT false,
  sp_updated timestamptz,
  hash_identity bigint,
  sp_uri varchar(500),
  hash_uri bigint
);
CREATE INDEX idx_sp_uri_hash_uri_v2 ON hfj_spidx_uri (hash_uri, res_id);
CREATE INDEX idx_sp_uri_hash_identity_v2 ON hfj_spidx_uri (hash_identity, sp_uri, res_id);
CREATE INDEX idx_sp_uri_resid ON hfj_spidx_uri (res_id);

CREATE TABLE hfj_spidx_coords (
  sp_id bigint PRIMARY KEY DEFAULT nextval('seq_spidx_coords'),
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  res_id bigint NOT NULL,
  res_type varchar(40) NOT NULL,
  sp_name varchar(100) NOT NULL,
  sp_missing boolean NOT NULL DEFAULT false,
  sp_updated timestamptz,
  hash_identity bigint,
  sp_latitude double precision,
  sp_longitude double precision
);
CREATE INDEX idx_sp_coords_hash_v2 ON hfj_spidx_coords (hash_identity, sp_latitude, sp_longitude, res_id);
CREATE INDEX idx_sp_coords_resid ON hfj_spidx_coords (res_id);

CREATE TABLE hfj_res_link (
  pid bigint PRIMARY KEY DEFAULT nextval('seq_reslink_id'),
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  src_path varchar(500) NOT NULL,
  src_resource_id bigint NOT NULL,
  source_resource_type varchar(40) NOT NULL,
  target_resource_id bigint,
  target_resource_type varchar(40),
  target_resource_url varchar(500),
  target_resource_version varchar(200),
  -- Ours, not HAPI's: the target's id even when it is not stored (yet), so that a search by
  -- reference finds resources written before their target.
  target_fhir_id varchar(64),
  target_res_partition_id integer,
  target_res_partition_date date,
  sp_updated timestamptz
);
CREATE INDEX idx_rl_src ON hfj_res_link (src_resource_id);
-- Partial indexes: a local reference has no URL, an external one no local target.
CREATE INDEX idx_rl_tgt_v2 ON hfj_res_link (target_resource_id, src_path, src_resource_id, target_resource_type, partition_id) WHERE target_resource_id IS NOT NULL;
CREATE INDEX idx_rl_tgt_fhir_id ON hfj_res_link (target_fhir_id, target_resource_type, src_path, src_resource_id) WHERE target_fhir_id IS NOT NULL;
CREATE INDEX idx_rl_srcpath_tgturl ON hfj_res_link (src_path, target_resource_url, partition_id, src_resource_id) WHERE target_resource_url IS NOT NULL;

CREATE TABLE hfj_res_param_present (
  pid bigint PRIMARY KEY DEFAULT nextval('seq_respardate_id'),
  partition_id integer NOT NULL DEFAULT 0,
  partition_date date,
  res_id bigint NOT NULL,
  sp_present boolean NOT NULL,
  hash_presence bigint
);
CREATE INDEX idx_resparmpresent_resid ON hfj_res_param_present (res_id);
CREATE INDEX idx_resparmpresent_hashpres ON hfj_res_param_present (hash_presence, res_id);
