-- The private signing keys sealed like the other secrets (src/auth/vault.ts, purpose
-- private-key, bound to the kid). Rows from before are sealed at the next start with a key
-- (src/auth/keys.ts), which then clears private_jwk; without a key they stay as they were and
-- are not used.
ALTER TABLE trb_signing_key
  ADD COLUMN private_jwk_sealed bytea,
  ALTER COLUMN private_jwk DROP NOT NULL,
  ADD CONSTRAINT trb_signing_key_private CHECK (private_jwk IS NOT NULL OR private_jwk_sealed IS NOT NULL);
