-- +goose Up
-- Readers choose newsletters; editors write editions and welcomes. The columns and tables the
-- next steps of "more than one newsletter" share, in one migration so each step builds on one schema.

-- What a subscribe request asked for: the newsletters its confirmation starts. A request from the
-- form or API asks for one or more; one from before asked for the digest of its language.
CREATE TABLE consent_newsletters (
    consent_id    bigint NOT NULL REFERENCES consents (id) ON DELETE CASCADE,
    newsletter_id bigint NOT NULL REFERENCES newsletters (id),
    PRIMARY KEY (consent_id, newsletter_id)
);
INSERT INTO consent_newsletters (consent_id, newsletter_id)
SELECT c.id, n.id
FROM consents c
JOIN subscribers s ON s.id = c.subscriber_id
JOIN newsletters n ON n.kind = 'digest' AND n.lang = coalesce(c.lang, s.lang)
WHERE c.source IN ('form', 'api');

-- A welcome per newsletter and language, written by editors: {"en": {"subject": "…", "markdown": "…"}}.
-- Empty (or a language missing): no welcome in that language.
ALTER TABLE newsletters ADD COLUMN welcome jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(welcome) = 'object');

-- When the reader was sent (queued) this subscription's welcome: once, after confirmation.
-- Readers who subscribed before welcomes existed count as welcomed.
ALTER TABLE subscriptions ADD COLUMN welcomed_at timestamptz;
UPDATE subscriptions SET welcomed_at = created_at;

-- A transactional email about one newsletter (a welcome) names it.
ALTER TABLE outbox ADD COLUMN newsletter_id bigint REFERENCES newsletters (id);

-- Editions are issues of an editions newsletter: written in Markdown (markdown NOT NULL) rather
-- than assembled from a window of articles (window_start and window_end NULL), so they go through
-- the same ledger, engine, Message-ID scheme and archive. send_at: an approved edition scheduled
-- for that time (NULL: sent when an editor says so).
ALTER TABLE issues
    ADD COLUMN markdown text CHECK (octet_length(markdown) <= 204800),
    ADD COLUMN send_at timestamptz,
    ALTER COLUMN window_start DROP NOT NULL,
    ALTER COLUMN window_end DROP NOT NULL,
    ADD CONSTRAINT issues_edition_or_window CHECK (
        (markdown IS NULL AND window_start IS NOT NULL AND window_end IS NOT NULL)
        OR (markdown IS NOT NULL AND window_start IS NULL AND window_end IS NULL)),
    ADD CONSTRAINT issues_send_at_edition CHECK (send_at IS NULL OR markdown IS NOT NULL);
-- A digest's windows are unique per newsletter (one digest per language today, so the same rule).
ALTER TABLE issues DROP CONSTRAINT issues_lang_window_start_key;
ALTER TABLE issues ADD CONSTRAINT issues_newsletter_window_start_key UNIQUE (newsletter_id, window_start);
-- The edition scheduler looks for approved editions whose time has come.
CREATE INDEX issues_scheduled ON issues (send_at) WHERE status = 'approved' AND send_at IS NOT NULL;

-- Schedule runs are per digest newsletter (today one per language, so lang stays the key and
-- newsletter_id says which digest it ran).
ALTER TABLE schedule_runs ADD COLUMN newsletter_id bigint REFERENCES newsletters (id);
UPDATE schedule_runs r SET newsletter_id = n.id FROM newsletters n WHERE n.kind = 'digest' AND n.lang = r.lang;
-- An editor's "skip the next run" of a digest: the scheduled time it skips.
ALTER TABLE newsletters ADD COLUMN skip_run_at timestamptz;
