-- Signing keys by purpose: 'id_token' (RS256, the id_tokens this server issues) and
-- 'client_assertion' (RS384, Tributary signing in at health systems with private_key_jwt; its
-- public key is published at /connect/jwks for them to register).
ALTER TABLE trb_signing_key ADD COLUMN purpose text NOT NULL DEFAULT 'id_token' CHECK (purpose IN ('id_token', 'client_assertion'));
