-- The connect flow, hardened (issue 14).
-- A sign-in under way is bound to the browser that started it (RFC 9700 section 4.7.1): the
-- SHA-256 of the random value of its HttpOnly connect cookie. Sign-ins begun before this
-- migration have none and could not be finished safely: they are dropped (each lasts 10 minutes).
DELETE FROM trb_connect_state;
ALTER TABLE trb_connect_state ADD COLUMN browser_sha256 bytea NOT NULL;

-- The hosts a registration may be used at (its client secret or client assertion is sent to the
-- token and revocation endpoints of these hosts only): `fhir.epic.com`, or `*.epic.com` for any
-- host under epic.com. Required for a vendor-wide registration, which every directory system of
-- the vendor would otherwise receive, wherever its base URL points. NOT VALID: vendor-wide rows
-- made before this migration stay, and are refused at use until registered again with hosts.
ALTER TABLE trb_client_registration ADD COLUMN hosts text[];
ALTER TABLE trb_client_registration ADD CONSTRAINT trb_client_registration_vendor_hosts
  CHECK (vendor IS NULL OR coalesce(cardinality(hosts), 0) > 0) NOT VALID;
