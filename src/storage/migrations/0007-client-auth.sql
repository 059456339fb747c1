-- Apps as OAuth clients, in more detail. The built-in sandbox health systems are apps whose client
-- (Tributary's connect flow) must authenticate one way only, as real EHRs demand:
-- token_auth_method NULL accepts a secret either way (client_secret_basic or client_secret_post,
-- 1upHealth's habit); 'private_key_jwt' takes a signed assertion (RFC 7523) verified with `jwks`.
-- access_token_seconds NULL: the server's default lifetime.
ALTER TABLE trb_app ADD COLUMN token_auth_method text
  CHECK (token_auth_method IN ('client_secret_basic', 'client_secret_post', 'private_key_jwt'));
ALTER TABLE trb_app ADD COLUMN jwks jsonb;
ALTER TABLE trb_app ADD COLUMN access_token_seconds integer CHECK (access_token_seconds > 0);

-- A client assertion is good once (its jti), until it expires.
CREATE TABLE trb_client_assertion (
  jti_sha256 bytea PRIMARY KEY,
  app_id integer NOT NULL REFERENCES trb_app (id) ON DELETE CASCADE,
  expires_at timestamptz NOT NULL
);
