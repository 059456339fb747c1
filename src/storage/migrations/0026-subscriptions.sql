-- FHIR Subscriptions (src/subscriptions): the registry of subscriptions that the write path matches
-- against, and the outbox of their notifications, one row per (subscription, resource version),
-- written in the same statement as the version it reports: it commits, or rolls back, with it.

-- One row per Subscription resource, kept by the repository's write hook (src/subscriptions/hook.ts)
-- and by the dispatcher, which moves it requested -> active / error.
CREATE TABLE trb_subscription (
  res_id bigint PRIMARY KEY,
  partition_id int NOT NULL,
  -- The user whose records it hears of; null: the app's, for all its users.
  owner_id bigint,
  fhir_id text NOT NULL,
  res_ver bigint NOT NULL,
  -- requested | active | error | off
  status text NOT NULL,
  -- What decides matching and delivery (criteria, topic, channel), hashed: a change asks for activation again.
  def_hash text NOT NULL,
  -- Why it cannot be activated (unsupported criteria, an endpoint refused), found as it was written.
  problem text,
  -- Why it went to error (Subscription.error).
  error text,
  resource_type text,
  -- The search the write path evaluates: [type]?[query] (a topic's filter for a topic-based one).
  criteria text,
  -- The SubscriptionTopic canonical of a topic-based (R5 backport) subscription; null: R4 criteria.
  topic text,
  heartbeat_seconds int,
  -- Events numbered so far (the backport's events-since-subscription-start).
  events bigint NOT NULL DEFAULT 0,
  -- Failed deliveries in a row; at the limit the subscription goes to error.
  failures int NOT NULL DEFAULT 0,
  -- Not tried again before (backoff after a failure).
  next_at timestamptz NOT NULL DEFAULT now(),
  -- Held by one dispatcher (a process) until then: deliveries of one subscription never overlap.
  lease_until timestamptz,
  last_sent timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trb_subscription_partition ON trb_subscription (partition_id);
-- The dispatcher's look for work (src/subscriptions/sql.ts claim): the few to activate, the few with a heartbeat.
CREATE INDEX trb_subscription_requested ON trb_subscription (res_id) WHERE status = 'requested';
CREATE INDEX trb_subscription_heartbeat ON trb_subscription (res_id) WHERE status = 'active' AND heartbeat_seconds IS NOT NULL;

CREATE TABLE trb_subscription_outbox (
  id bigserial PRIMARY KEY,
  sub_res_id bigint NOT NULL,
  partition_id int NOT NULL,
  res_id bigint NOT NULL,
  res_type text NOT NULL,
  fhir_id text NOT NULL,
  res_ver bigint NOT NULL,
  -- The criteria have parts the write path cannot evaluate in memory: checked in SQL before delivery.
  verify boolean NOT NULL,
  -- Given at the first attempt, kept on retries (the backport's notification-event.event-number).
  event_number bigint,
  attempts int NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  sent_at timestamptz
);
-- What is still to send, in order per subscription.
CREATE INDEX trb_subscription_outbox_pending ON trb_subscription_outbox (sub_res_id, id) WHERE sent_at IS NULL;
-- $events: a subscription's events by number.
CREATE INDEX trb_subscription_outbox_events ON trb_subscription_outbox (sub_res_id, event_number) WHERE event_number IS NOT NULL;
CREATE INDEX trb_subscription_outbox_sent ON trb_subscription_outbox (sent_at) WHERE sent_at IS NOT NULL;

-- The registry's version: every process caches the active subscriptions and reloads them when it
-- changes (told at once by NOTIFY, and checking it every few seconds besides).
CREATE TABLE trb_subscription_state (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  version bigint NOT NULL
);
INSERT INTO trb_subscription_state (one, version) VALUES (true, 0);

CREATE FUNCTION trb_subscription_registry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('trb_subscriptions', NEW.version::text);
  RETURN NULL;
END $$;
CREATE TRIGGER trb_subscription_state_notify AFTER UPDATE ON trb_subscription_state
  FOR EACH ROW EXECUTE FUNCTION trb_subscription_registry_changed();

-- Notifications to send: the dispatchers hear of them as the write commits (NOTIFY is delivered
-- on commit, and not at all for a write rolled back).
CREATE FUNCTION trb_subscription_outbox_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('trb_subscription_outbox', '');
  RETURN NULL;
END $$;
CREATE TRIGGER trb_subscription_outbox_notify AFTER INSERT ON trb_subscription_outbox
  FOR EACH STATEMENT EXECUTE FUNCTION trb_subscription_outbox_added();
