-- The distribution key (docs/scaling.md): every row of a person's records carries owner_id, and
-- owner_id is in every primary key, unique index and foreign key of those tables, so that the
-- tables distribute on Citus by owner_id, colocated: a person's records, versions, tags, index
-- rows, links and de-duplication links are on one shard, and every query of one person's records
-- names that shard. src/storage/distribution.ts lists the tables of each kind;
-- test/integration/citus-schema.test.ts checks this schema against Citus's rules.
--
-- owner_id was NULL for records no person owns: an app's own records, the directory's, and every
-- record written without users (FHIR_AUTH=off). A distribution column cannot be NULL, so these now
-- carry -(2^31 + partition_id): each app's own records are one key of their own (never a user's,
-- which are positive), not one key shared by every app.
--
-- HAPI's "database partition mode" puts partition_id in every key; HAPI's partition is our app
-- (partition_id, kept in every table and every query). The key is one level finer, the person,
-- because an app with a million users would be one shard.

ALTER TABLE hfj_res_ver ADD COLUMN owner_id bigint;
ALTER TABLE hfj_res_tag ADD COLUMN owner_id bigint;
ALTER TABLE hfj_history_tag ADD COLUMN owner_id bigint;

UPDATE hfj_resource SET owner_id = -(2147483648 + partition_id) WHERE owner_id IS NULL;
UPDATE hfj_res_ver v SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = v.res_id;
UPDATE hfj_res_tag t SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = t.res_id;
UPDATE hfj_history_tag t SET owner_id = r.owner_id FROM hfj_resource r WHERE r.res_id = t.res_id;
-- Rows of a resource that is not there (none are written so; a HAPI copy might have some) go.
DELETE FROM hfj_res_tag WHERE owner_id IS NULL;
DELETE FROM hfj_history_tag WHERE owner_id IS NULL;

UPDATE hfj_spidx_string SET owner_id = -(2147483648 + partition_id) WHERE owner_id IS NULL;
UPDATE hfj_spidx_token SET owner_id = -(2147483648 + partition_id) WHERE owner_id IS NULL;
UPDATE hfj_spidx_date SET owner_id = -(2147483648 + partition_id) WHERE owner_id IS NULL;
UPDATE hfj_spidx_number SET owner_id = -(2147483648 + partition_id) WHERE owner_id IS NULL;
UPDATE hfj_spidx_quantity SET owner_id = -(2147483648 + partition_id) WHERE owner_id IS NULL;
UPDATE hfj_spidx_quantity_nrml SET owner_id = -(2147483648 + partition_id) WHERE owner_id IS NULL;
UPDATE hfj_spidx_uri SET owner_id = -(2147483648 + partition_id) WHERE owner_id IS NULL;
UPDATE hfj_spidx_coords SET owner_id = -(2147483648 + partition_id) WHERE owner_id IS NULL;
UPDATE hfj_res_link SET owner_id = -(2147483648 + partition_id) WHERE owner_id IS NULL;
UPDATE hfj_res_param_present SET owner_id = -(2147483648 + partition_id) WHERE owner_id IS NULL;

ALTER TABLE hfj_resource ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_res_ver ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_res_tag ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_history_tag ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_spidx_string ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_spidx_token ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_spidx_date ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_spidx_number ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_spidx_quantity ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_spidx_quantity_nrml ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_spidx_uri ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_spidx_coords ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_res_link ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE hfj_res_param_present ALTER COLUMN owner_id SET NOT NULL;

-- Keys. The foreign keys between the person's tables name the owner on both sides (colocated).
ALTER TABLE hfj_res_ver DROP CONSTRAINT hfj_res_ver_res_id_fkey;
ALTER TABLE hfj_history_tag DROP CONSTRAINT hfj_history_tag_res_ver_pid_fkey;
ALTER TABLE hfj_resource DROP CONSTRAINT hfj_resource_pkey, ADD PRIMARY KEY (res_id, owner_id);
ALTER TABLE hfj_res_ver DROP CONSTRAINT hfj_res_ver_pkey, ADD PRIMARY KEY (pid, owner_id);
ALTER TABLE hfj_res_ver ADD CONSTRAINT hfj_res_ver_res_id_fkey FOREIGN KEY (res_id, owner_id) REFERENCES hfj_resource (res_id, owner_id);
ALTER TABLE hfj_history_tag ADD CONSTRAINT hfj_history_tag_res_ver_pid_fkey FOREIGN KEY (res_ver_pid, owner_id) REFERENCES hfj_res_ver (pid, owner_id);
ALTER TABLE hfj_res_tag DROP CONSTRAINT hfj_res_tag_pkey, ADD PRIMARY KEY (pid, owner_id);
ALTER TABLE hfj_history_tag DROP CONSTRAINT hfj_history_tag_pkey, ADD PRIMARY KEY (pid, owner_id);
ALTER TABLE hfj_spidx_string DROP CONSTRAINT hfj_spidx_string_pkey, ADD PRIMARY KEY (sp_id, owner_id);
ALTER TABLE hfj_spidx_token DROP CONSTRAINT hfj_spidx_token_pkey, ADD PRIMARY KEY (sp_id, owner_id);
ALTER TABLE hfj_spidx_date DROP CONSTRAINT hfj_spidx_date_pkey, ADD PRIMARY KEY (sp_id, owner_id);
ALTER TABLE hfj_spidx_number DROP CONSTRAINT hfj_spidx_number_pkey, ADD PRIMARY KEY (sp_id, owner_id);
ALTER TABLE hfj_spidx_quantity DROP CONSTRAINT hfj_spidx_quantity_pkey, ADD PRIMARY KEY (sp_id, owner_id);
ALTER TABLE hfj_spidx_quantity_nrml DROP CONSTRAINT hfj_spidx_quantity_nrml_pkey, ADD PRIMARY KEY (sp_id, owner_id);
ALTER TABLE hfj_spidx_uri DROP CONSTRAINT hfj_spidx_uri_pkey, ADD PRIMARY KEY (sp_id, owner_id);
ALTER TABLE hfj_spidx_coords DROP CONSTRAINT hfj_spidx_coords_pkey, ADD PRIMARY KEY (sp_id, owner_id);
ALTER TABLE hfj_res_link DROP CONSTRAINT hfj_res_link_pkey, ADD PRIMARY KEY (pid, owner_id);
ALTER TABLE hfj_res_param_present DROP CONSTRAINT hfj_res_param_present_pkey, ADD PRIMARY KEY (pid, owner_id);

-- A resource's id is unique within its owner's records (HAPI: within its partition). A create
-- with an id of the client's choosing checks that no other owner of the app holds it
-- (src/storage/repository.ts), which a unique index across shards cannot do.
DROP INDEX idx_res_type_fhir_id;
CREATE UNIQUE INDEX idx_res_type_fhir_id ON hfj_resource (partition_id, res_type, fhir_id, owner_id);
DROP INDEX idx_resver_id_ver;
CREATE UNIQUE INDEX idx_resver_id_ver ON hfj_res_ver (res_id, res_ver, owner_id);
DROP INDEX idx_restag_tagid;
CREATE UNIQUE INDEX idx_restag_tagid ON hfj_res_tag (res_id, tag_id, owner_id);
DROP INDEX idx_reshisttag_tagid;
CREATE UNIQUE INDEX idx_reshisttag_tagid ON hfj_history_tag (res_ver_pid, tag_id, owner_id);

-- The partial index of owned records covers every record now (the app's own under their key).
DROP INDEX idx_res_owner;
CREATE INDEX idx_res_owner ON hfj_resource (partition_id, owner_id, res_type);
