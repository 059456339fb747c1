-- Subscription.end (src/subscriptions/definition.ts): the instant a subscription stops hearing of
-- writes; the dispatcher then turns it off.
ALTER TABLE trb_subscription ADD COLUMN ends_at timestamptz;
CREATE INDEX trb_subscription_ends ON trb_subscription (ends_at) WHERE ends_at IS NOT NULL AND status IN ('requested', 'active');
