-- +goose Up
-- The sending ledger: one row per (issue, reader), created in one statement when sending starts.
-- A worker claims due rows by moving next_attempt_at forward (the lease) and naming itself in
-- claimed_by; a row becomes 'sent' only after the SMTP server accepted its message.
CREATE TABLE deliveries (
    issue_id        bigint NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    -- No foreign key: erasing a reader must not rewrite the ledger; the claim skips missing readers.
    subscriber_id   bigint NOT NULL,
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed', 'skipped')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- The sending process holding the row's lease (its advisory-lock key), NULL when none does.
    claimed_by      bigint,
    sent_at         timestamptz,
    last_error      text NOT NULL DEFAULT '',
    PRIMARY KEY (issue_id, subscriber_id)
);
CREATE INDEX deliveries_due ON deliveries (issue_id, next_attempt_at) WHERE status = 'queued';
-- Small: only rows leased right now; lets a sender find the leases of a process that died.
CREATE INDEX deliveries_claimed ON deliveries (claimed_by) WHERE status = 'queued' AND claimed_by IS NOT NULL;

-- One row per scheduled digest run and language, so several serve processes run it once and a
-- restarted process knows whether the last scheduled time was handled.
CREATE TABLE schedule_runs (
    lang         text NOT NULL,
    scheduled_at timestamptz NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    outcome      text NOT NULL DEFAULT '',
    issue_id     bigint REFERENCES issues (id) ON DELETE SET NULL,
    PRIMARY KEY (lang, scheduled_at)
);
