-- +goose Up
-- Erasing a reader takes their address out of their deliveries' last SMTP error
-- (subscribers.scrubTraces); without this the ledger, keyed by issue first, is read whole each time.
-- Only rows with an error: a sent row has none.
CREATE INDEX deliveries_subscriber_errors ON deliveries (subscriber_id) WHERE last_error <> '';
