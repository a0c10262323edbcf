-- +goose Up
-- The sending ledger: one row per (issue, reader), created in one statement when sending starts.
CREATE TABLE deliveries (
    issue_id        bigint NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    subscriber_id   bigint NOT NULL,
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed', 'skipped')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    last_error      text NOT NULL DEFAULT '',
    PRIMARY KEY (issue_id, subscriber_id)
);
CREATE INDEX deliveries_due ON deliveries (issue_id, next_attempt_at) WHERE status = 'queued';
