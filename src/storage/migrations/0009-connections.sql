-- The connect flow: a user of an app signs in at a health system, and Tributary keeps the tokens.
-- A sign-in under way: its state (a signed random value, kept here hashed, used once, for 10
-- minutes), and the PKCE verifier, sealed.
CREATE TABLE trb_connect_state (
  state_sha256 bytea PRIMARY KEY,
  app_id integer NOT NULL REFERENCES trb_app (id) ON DELETE CASCADE,
  user_id bigint NOT NULL REFERENCES trb_user (id) ON DELETE CASCADE,
  system_id text NOT NULL REFERENCES trb_system (id) ON DELETE CASCADE,
  code_verifier_sealed bytea NOT NULL,
  -- The app's own state, handed back on its redirect.
  app_state text,
  expires_at timestamptz NOT NULL
);
CREATE INDEX idx_trb_connect_state_expires ON trb_connect_state (expires_at);

-- A user's connection to a health system: one per (user, system); tokens sealed with the
-- configured key, bound to the connection.
CREATE TABLE trb_connection (
  id bigserial PRIMARY KEY,
  app_id integer NOT NULL REFERENCES trb_app (id) ON DELETE CASCADE,
  user_id bigint NOT NULL REFERENCES trb_user (id) ON DELETE CASCADE,
  system_id text NOT NULL REFERENCES trb_system (id),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'needs_reauth')),
  patient_id text,
  scope text NOT NULL,
  access_token_sealed bytea NOT NULL,
  refresh_token_sealed bytea,
  access_expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  last_sync_at timestamptz,
  last_error text,
  UNIQUE (user_id, system_id)
);
CREATE INDEX idx_trb_connection_app ON trb_connection (app_id, user_id);
