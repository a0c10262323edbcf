-- +goose Up
-- A consent row is first a request (the form or the API, by anyone who knows the address) and
-- becomes consent only when the address's owner confirms it: until then it changes nothing about
-- the reader. name and lang are what the request asked for (NULL: as stored).
ALTER TABLE consents
    ADD COLUMN confirmed_at timestamptz,
    ADD COLUMN name text CHECK (length(name) <= 100),
    ADD COLUMN lang text;

-- Rows from before: an import's consent stands as given; a form or API opt-in counts as confirmed
-- when the reader confirmed after it.
UPDATE consents c SET confirmed_at = CASE WHEN c.source = 'import' THEN c.created_at ELSE s.confirmed_at END
FROM subscribers s
WHERE s.id = c.subscriber_id AND (c.source = 'import' OR (s.confirmed_at IS NOT NULL AND c.created_at <= s.confirmed_at));

-- Readers who had left and were set back to pending by an unconfirmed request (the rule before this
-- one) go back to how they left; their request stays open, so its confirm link still works.
UPDATE subscribers SET status = CASE
        WHEN complained_at IS NOT NULL AND complained_at >= coalesce(greatest(unsubscribed_at, bounced_at), '-infinity') THEN 'complained'
        WHEN bounced_at IS NOT NULL AND bounced_at >= coalesce(unsubscribed_at, '-infinity') THEN 'bounced'
        ELSE 'unsubscribed' END
WHERE status = 'pending' AND (unsubscribed_at IS NOT NULL OR bounced_at IS NOT NULL OR complained_at IS NOT NULL);

-- Confirm looks for the reader's latest open request.
CREATE INDEX consents_open ON consents (subscriber_id, created_at) WHERE confirmed_at IS NULL;
