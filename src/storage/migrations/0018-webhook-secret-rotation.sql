-- Server-issued webhook secrets (Standard Webhooks): a PUT issues a new one, and the one it replaces
-- keeps signing beside it (a second signature) until previous_until, so that an app rotates without
-- refusing events signed while its receiver still had the old secret.
ALTER TABLE trb_webhook ADD COLUMN previous_secret_sealed bytea, ADD COLUMN previous_until timestamptz;
