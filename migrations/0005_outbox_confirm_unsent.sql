-- +goose Up
-- Subscribe asks whether the reader has an unsent confirmation; without this index the planner may
-- walk outbox_due, every unsent email, for each subscription (linear in the backlog).
CREATE INDEX outbox_confirm_unsent ON outbox (subscriber_id) WHERE kind = 'confirm' AND sent_at IS NULL AND skipped_at IS NULL;

