-- +goose Up
-- What a feed's server said beyond its items (digest/feeds).
-- fetch_url: where a permanent redirect (301, 308) moved the feed; '' fetches the configured url,
--   which stays the feed's identity (NEWSLETTER_FEEDS names it).
-- failures: polls failed in a row; 0 after a success.
-- retry_after: a 429 or 503 asked for no fetch before this time.
-- gone_at: the feed answered 410 Gone; the poller no longer fetches it.
ALTER TABLE feeds
    ADD COLUMN fetch_url   text NOT NULL DEFAULT '',
    ADD COLUMN failures    integer NOT NULL DEFAULT 0,
    ADD COLUMN retry_after timestamptz,
    ADD COLUMN gone_at     timestamptz;
