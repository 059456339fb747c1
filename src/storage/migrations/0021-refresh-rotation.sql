-- Whether an app's refresh tokens rotate (each refresh spends the token and gives a new one; a spent
-- one presented again ends its sign-in). False: the same refresh token is answered again and stays
-- good until it expires, as Oracle Health's does (ehr-behaviour.md §2 Oracle "Refresh"); the
-- simulated Oracle sandbox's app is the one such app.
ALTER TABLE trb_app ADD COLUMN refresh_rotates boolean NOT NULL DEFAULT true;
