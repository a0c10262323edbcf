-- +goose Up
-- Set instead of sent_at when the server refused the email for good (a 5xx for the address): it is
-- never tried again. Rows stay in the partial indexes on unsent email, which the queries' extra
-- "failed_at IS NULL" still lets them use; refusals are few.
ALTER TABLE outbox ADD COLUMN failed_at timestamptz;
