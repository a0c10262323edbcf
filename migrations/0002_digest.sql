-- +goose Up
-- One row per configured feed: conditional-GET state and the last outcome, for the editor pages.
CREATE TABLE feeds (
    url             text PRIMARY KEY,
    lang            text NOT NULL,
    etag            text NOT NULL DEFAULT '',
    last_modified   text NOT NULL DEFAULT '',
    last_fetched_at timestamptz,
    last_ok_at      timestamptz,
    last_error      text NOT NULL DEFAULT ''
);

CREATE TABLE articles (
    id            bigserial PRIMARY KEY,
    lang          text NOT NULL,
    -- GUID / Atom id, else the canonical link; editors' articles get a generated one.
    guid          text NOT NULL,
    source        text NOT NULL DEFAULT 'feed' CHECK (source IN ('feed', 'editor')),
    feed_url      text NOT NULL DEFAULT '',
    title         text NOT NULL,
    link          text NOT NULL DEFAULT '',
    summary       text NOT NULL DEFAULT '',
    author        text NOT NULL DEFAULT '',
    section       text NOT NULL DEFAULT '',
    image_url     text NOT NULL DEFAULT '',
    image_alt     text NOT NULL DEFAULT '',
    published_at  timestamptz NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    pinned        boolean NOT NULL DEFAULT false,
    hidden        boolean NOT NULL DEFAULT false,
    -- Editor's order within the coming issue; NULL means the default order.
    position      int,
    UNIQUE (lang, guid)
);
CREATE INDEX articles_lang_published ON articles (lang, published_at);

CREATE TABLE issues (
    id            bigserial PRIMARY KEY,
    lang          text NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    status        text NOT NULL CHECK (status IN ('draft', 'approved', 'sending', 'paused', 'sent', 'cancelled', 'skipped')),
    subject       text NOT NULL DEFAULT '',
    preheader     text NOT NULL DEFAULT '',
    note          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    approved_at   timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz,
    pause_reason  text NOT NULL DEFAULT '',
    -- The archive copy, rendered once with no reader's data in it.
    archive_html  text NOT NULL DEFAULT '',
    archive_text  text NOT NULL DEFAULT '',
    UNIQUE (lang, window_start),
    CHECK (window_end > window_start)
);

-- Which articles an issue carries, in order. article_id is unique: no article lands in two issues.
CREATE TABLE issue_articles (
    issue_id   bigint NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    article_id bigint NOT NULL REFERENCES articles (id) UNIQUE,
    position   int NOT NULL,
    PRIMARY KEY (issue_id, article_id)
);
