-- +goose Up
-- Bounces and complaints that came back after sending (the bounce mailbox, the providers'
-- webhooks), one row each, kept with their reason, issue and time (subscribers.Store.RecordEvents).
-- subscriber_id has no foreign key, as in the deliveries ledger: erasing a reader does not rewrite
-- the per-issue figures; the reason holds no address.
CREATE TABLE reader_events (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint')),
    subscriber_id bigint NOT NULL,
    -- NULL: mail that belonged to no issue (a confirmation), or a report that does not say.
    issue_id      bigint REFERENCES issues (id) ON DELETE SET NULL,
    reason        text NOT NULL DEFAULT '' CHECK (length(reason) <= 1000),
    source        text NOT NULL CHECK (source IN ('imap', 'ses', 'postmark', 'mailgun')),
    -- The report's id at its source: a report handled twice is recorded once.
    external_id   text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 300),
    -- When the report says it happened; created_at is when it reached us.
    occurred_at   timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- What it did to the reader: 'bounced', 'complained', or '' (counted only, or they had left).
    effect        text NOT NULL DEFAULT '' CHECK (effect IN ('', 'bounced', 'complained')),
    UNIQUE (source, external_id)
);
-- The soft-bounce rule reads a reader's events by issue; per-issue figures read an issue's.
CREATE INDEX reader_events_subscriber_issue ON reader_events (subscriber_id, issue_id);
CREATE INDEX reader_events_issue ON reader_events (issue_id, kind) WHERE issue_id IS NOT NULL;
