-- Failed sign-ins on the SMART login page, counted here so that every server process sharing the
-- database sees the same count (issue 14). One row per key: the SHA-256 of "username" (per app)
-- or "address" (the client's IP), never the typed value itself (people type passwords into the
-- username field). `failures` counts within the window that began at `window_start`; reaching the
-- limit locks the key until `locked_until`, for longer at each lockout in a row (`lockouts`).
CREATE TABLE trb_signin_failure (
  key_sha256 bytea PRIMARY KEY,
  failures integer NOT NULL,
  window_start timestamptz NOT NULL,
  lockouts integer NOT NULL DEFAULT 0,
  locked_until timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_trb_signin_failure_updated ON trb_signin_failure (updated_at);

-- A sign-in request (one pending authorize) ends after 5 wrong passwords.
ALTER TABLE trb_authz_request ADD COLUMN failures integer NOT NULL DEFAULT 0;

-- The token family a code's first redemption issued: a replayed code revokes it (RFC 6749 4.1.2).
ALTER TABLE trb_auth_code ADD COLUMN family uuid;
