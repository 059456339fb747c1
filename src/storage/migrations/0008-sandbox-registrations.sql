-- How Tributary signs in, as an OAuth client, at the health systems it connects users to: one
-- registration per directory system or per EHR vendor (a system's own wins), set by the operator
-- (CLI, configuration) or by a built-in sandbox system for itself. Secrets are sealed with the
-- configured key (src/auth/vault.ts), bound to the registration's client_id.
CREATE TABLE trb_client_registration (
  id serial PRIMARY KEY,
  system_id text UNIQUE,
  vendor text UNIQUE,
  client_id text NOT NULL,
  auth_method text NOT NULL CHECK (auth_method IN ('none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt')),
  client_secret_sealed bytea,
  -- The scopes asked for; NULL: launch/patient openid fhirUser offline_access patient/*.read
  scope text,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((system_id IS NULL) <> (vendor IS NULL)),
  CHECK ((auth_method IN ('client_secret_basic', 'client_secret_post')) = (client_secret_sealed IS NOT NULL))
);

-- The built-in sandbox health systems: each is an app of this server (its patients are the app's
-- users, its records the app's data); loaded_at is set once its records are all written.
CREATE TABLE trb_sandbox (
  name text PRIMARY KEY,
  app_id integer NOT NULL REFERENCES trb_app (id) ON DELETE CASCADE,
  loaded_at timestamptz
);
