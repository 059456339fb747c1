-- Apps (tenants), their users, and the codes and tokens that act for them. Tributary's own tables.
-- An app's data is HAPI partition `partition_id` (= the app's id); partition 0 is the built-in
-- app that anonymous requests use when FHIR_AUTH=off. Secrets and tokens are stored as SHA-256
-- hashes of 256-bit random values; passwords as scrypt hashes.
CREATE TABLE trb_app (
  id serial PRIMARY KEY,
  client_id text NOT NULL UNIQUE,
  secret_sha256 bytea NOT NULL,
  name text NOT NULL,
  redirect_uris text[] NOT NULL DEFAULT '{}',
  scopes text[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE trb_user (
  id bigserial PRIMARY KEY,
  app_id integer NOT NULL REFERENCES trb_app (id) ON DELETE CASCADE,
  app_user_id text NOT NULL,
  active boolean NOT NULL DEFAULT true,
  -- A person signing in on the SMART login page (scrypt$N$r$p$salt$hash); null: no password.
  username text,
  password_hash text,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (app_id, app_user_id),
  UNIQUE (app_id, username)
);

-- Authorization codes: single use, short-lived.
CREATE TABLE trb_auth_code (
  code_sha256 bytea PRIMARY KEY,
  app_id integer NOT NULL REFERENCES trb_app (id) ON DELETE CASCADE,
  user_id bigint NOT NULL REFERENCES trb_user (id) ON DELETE CASCADE,
  scope text NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);

-- Access and refresh tokens. A refresh token is used once (rotation); each token belongs to a
-- family (one sign-in), so that a refresh token used twice ends the whole family.
CREATE TABLE trb_token (
  token_sha256 bytea PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('access', 'refresh')),
  family uuid NOT NULL,
  app_id integer NOT NULL REFERENCES trb_app (id) ON DELETE CASCADE,
  -- null: an app token (client_credentials), for all of the app's users.
  user_id bigint REFERENCES trb_user (id) ON DELETE CASCADE,
  scope text NOT NULL,
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_trb_token_family ON trb_token (family);
CREATE INDEX idx_trb_token_expires ON trb_token (expires_at);

-- User-management calls per app and hour (the rate limit).
CREATE TABLE trb_rate (
  app_id integer NOT NULL REFERENCES trb_app (id) ON DELETE CASCADE,
  bucket timestamptz NOT NULL,
  calls integer NOT NULL,
  PRIMARY KEY (app_id, bucket)
);

-- The user a resource belongs to (null: the app's own, outside any user's records). Every read,
-- search, include and history of a user's request adds `owner_id = <user>` next to partition_id.
ALTER TABLE hfj_resource ADD COLUMN owner_id bigint;
CREATE INDEX idx_res_owner ON hfj_resource (partition_id, owner_id, res_type) WHERE owner_id IS NOT NULL;
