-- The SMART App Launch authorization server: its signing keys, the authorization requests a
-- person is signing in to and approving, and what a code and a token carry for SMART apps.
CREATE TABLE trb_signing_key (
  kid text PRIMARY KEY,
  private_jwk jsonb NOT NULL,
  public_jwk jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- An authorization request between /oauth2/authorize and the consent: keyed by the SHA-256 of a
-- random id that the login and consent forms carry (it is also their CSRF token).
CREATE TABLE trb_authz_request (
  id_sha256 bytea PRIMARY KEY,
  app_id integer NOT NULL REFERENCES trb_app (id) ON DELETE CASCADE,
  redirect_uri text NOT NULL,
  scope text NOT NULL,
  state text NOT NULL,
  code_challenge text NOT NULL,
  nonce text,
  user_id bigint REFERENCES trb_user (id) ON DELETE CASCADE,
  expires_at timestamptz NOT NULL
);

-- A public app (client-public) has no secret to authenticate with: PKCE alone protects its codes.
ALTER TABLE trb_app ADD COLUMN public boolean NOT NULL DEFAULT false;

-- SMART codes remember their redirect_uri, PKCE challenge and OpenID nonce; codes and tokens the
-- patient they were granted for (the launch context, given again on refresh).
ALTER TABLE trb_auth_code ADD COLUMN redirect_uri text, ADD COLUMN code_challenge text, ADD COLUMN nonce text, ADD COLUMN patient_id text;
ALTER TABLE trb_token ADD COLUMN patient_id text;
