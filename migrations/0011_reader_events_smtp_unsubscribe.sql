-- +goose Up
-- Every way a reader stops getting mail is kept with its issue, under one policy:
-- a refusal of the address during our own SMTP exchange (source 'smtp') is a hard bounce like one
-- reported later, and a reader who left through one issue's unsubscribe link is an 'unsubscribe'
-- (source 'link', effect 'unsubscribed'), so each issue's figures count it.
ALTER TABLE reader_events
    DROP CONSTRAINT reader_events_kind_check,
    ADD CONSTRAINT reader_events_kind_check CHECK (kind IN ('hard', 'soft', 'complaint', 'unsubscribe')),
    DROP CONSTRAINT reader_events_source_check,
    ADD CONSTRAINT reader_events_source_check CHECK (source IN ('imap', 'ses', 'postmark', 'mailgun', 'smtp', 'link')),
    DROP CONSTRAINT reader_events_effect_check,
    ADD CONSTRAINT reader_events_effect_check CHECK (effect IN ('', 'bounced', 'complained', 'unsubscribed'));
