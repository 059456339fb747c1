-- An app's webhook: where sync events are POSTed, signed with HMAC-SHA256 under the app's secret
-- (sealed with the configured key, bound to the app).
CREATE TABLE trb_webhook (
  app_id integer PRIMARY KEY REFERENCES trb_app (id) ON DELETE CASCADE,
  url text NOT NULL,
  secret_sealed bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
