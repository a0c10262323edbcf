-- +goose Up
-- Key/value settings the service keeps for itself (the generated signing secret).
CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE subscribers (
    id            bigserial PRIMARY KEY,
    -- Random public handle used inside signed links, so no link carries a guessable id.
    uuid          uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    -- Trimmed, domain lower-cased; uniqueness is case-insensitive (index below).
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    name          text NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    lang          text NOT NULL,
    status        text NOT NULL CHECK (status IN ('pending', 'confirmed', 'unsubscribed', 'bounced', 'complained')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- When the current opt-in began; confirm links issued before it are void.
    subscribed_at timestamptz NOT NULL DEFAULT now(),
    confirmed_at     timestamptz,
    unsubscribed_at  timestamptz,
    bounced_at       timestamptz,
    complained_at    timestamptz,
    -- The last hard bounce's diagnostic, as the sender recorded it.
    bounce_reason    text NOT NULL DEFAULT '',
    -- When a confirmation email was last queued: at most one per address per 10 minutes.
    confirmation_sent_at timestamptz,
    CHECK (status <> 'confirmed' OR confirmed_at IS NOT NULL)
);
CREATE UNIQUE INDEX subscribers_email_lower_key ON subscribers (lower(email));
-- The sender walks confirmed readers of one language in id order.
CREATE INDEX subscribers_confirmed_lang_id ON subscribers (lang, id) WHERE status = 'confirmed';

-- Proof of consent, one row per opt-in (form, API or import).
CREATE TABLE consents (
    id            bigserial PRIMARY KEY,
    subscriber_id bigint NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    ip            text NOT NULL DEFAULT '',
    user_agent    text NOT NULL DEFAULT '',
    source        text NOT NULL CHECK (source IN ('form', 'api', 'import')),
    text_version  text NOT NULL
);
CREATE INDEX consents_subscriber ON consents (subscriber_id);

-- Erased addresses, kept only as a keyed hash so an import cannot add them back without new consent.
CREATE TABLE suppressions (
    email_hash bytea PRIMARY KEY,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Transactional emails (confirmations) queued in the same transaction as the change that needs
-- them, and sent by a worker that retries while SMTP is down.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL,
    subscriber_id   bigint REFERENCES subscribers (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    -- Set instead of sent_at when the email was no longer wanted (the reader left or confirmed).
    skipped_at      timestamptz,
    last_error      text NOT NULL DEFAULT ''
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND skipped_at IS NULL;
-- Deleting a reader cascades here; Subscribe looks for the reader's unsent confirmation.
CREATE INDEX outbox_subscriber ON outbox (subscriber_id);
