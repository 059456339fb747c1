-- Subscriptions hear of the interactions they ask for (src/subscriptions/definition.ts): an R4
-- criteria subscription of creates and updates unless an extension says otherwise (Medplum's
-- subscription-supported-interaction, HAPI's subscription-send-delete-messages), deletes included.

-- The interactions a subscription hears of: a subset of {create, update, delete}.
ALTER TABLE trb_subscription ADD COLUMN interactions text[] NOT NULL DEFAULT '{create,update}';

-- A notification of a delete: the version it names is the tombstone, its focus gone.
ALTER TABLE trb_subscription_outbox ADD COLUMN deleted boolean NOT NULL DEFAULT false;
