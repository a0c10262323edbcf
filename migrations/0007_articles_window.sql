-- +goose Up
-- What the window rule (digest/window.go) needs to know of an article beyond its dates.
-- baseline: the item was already in its feed when the feed was first fetched; stored, not news.
-- undated: the feed gave no usable date, so published_at is the first-seen time.
-- picked: an editor chose it by hand; it joins the coming issue whatever its dates.
ALTER TABLE articles
    ADD COLUMN baseline boolean NOT NULL DEFAULT false,
    ADD COLUMN undated  boolean NOT NULL DEFAULT false,
    ADD COLUMN picked   boolean NOT NULL DEFAULT false;
