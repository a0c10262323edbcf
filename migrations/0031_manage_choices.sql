-- +goose Up
-- Readers choose their newsletters on the manage page and leave one newsletter through an issue's
-- unsubscribe link.
--
-- A newsletter turned on from the manage page rests on the reader's own consent there (the signed
-- link proves the address): a consents row of source 'manage', confirmed when given, with a
-- consent_newsletters row per newsletter it turned on.
ALTER TABLE consents
    DROP CONSTRAINT consents_source_check,
    ADD CONSTRAINT consents_source_check CHECK (source IN ('form', 'api', 'import', 'manage'));

-- An unsubscribe that left only the issue's newsletter (the reader still gets others) has effect
-- 'left'; one that left the last has 'unsubscribed' as before. Leaving the last newsletter by
-- unticking it on the manage page is kept as source 'manage'.
ALTER TABLE reader_events
    DROP CONSTRAINT reader_events_source_check,
    ADD CONSTRAINT reader_events_source_check CHECK (source IN ('imap', 'ses', 'postmark', 'mailgun', 'smtp', 'link', 'manage')),
    DROP CONSTRAINT reader_events_effect_check,
    ADD CONSTRAINT reader_events_effect_check CHECK (effect IN ('', 'bounced', 'complained', 'unsubscribed', 'left'));
