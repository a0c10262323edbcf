-- +goose Up
-- Newsletters as records: what a reader can subscribe to. Today's setup becomes one digest per
-- language (English and Russian, and any other language readers, issues or feeds already have);
-- `serve` and the other commands add the digest of a configured language that has none yet
-- (newsletters.EnsureDigests), as a migration cannot read the settings.
--
-- names and descriptions are jsonb objects keyed by language ({"en": "…", "ru": "…"}): always read
-- whole with their newsletter, a handful of keys, never searched or joined by language, so a child
-- table would add a join and nothing it could enforce that the CHECKs below do not.
--
-- langs: a digest is built in one language; an editions newsletter is written in one or more
-- (an edition per language). lang is the digest's one language, generated so it can be unique.
-- schedule, max_articles, require_approval: NULL takes the setting (NEWSLETTER_DIGEST_SCHEDULE,
-- _MAX_ARTICLES, _REQUIRE_APPROVAL), which is what every digest does until the schedules pages.
CREATE TABLE newsletters (
    id               bigserial PRIMARY KEY,
    slug             text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 64),
    kind             text NOT NULL CHECK (kind IN ('digest', 'editions')),
    names            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(names) = 'object'),
    descriptions     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(descriptions) = 'object'),
    langs            text[] NOT NULL CHECK (cardinality(langs) >= 1 AND array_position(langs, NULL) IS NULL),
    lang             text GENERATED ALWAYS AS (CASE WHEN kind = 'digest' THEN langs[1] END) STORED,
    schedule         text CHECK (length(schedule) BETWEEN 1 AND 200),
    max_articles     int CHECK (max_articles BETWEEN 1 AND 100),
    require_approval boolean,
    -- Whether the subscribe form offers it, and ticked by default.
    on_form          boolean NOT NULL DEFAULT true,
    default_on       boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'digest' AND cardinality(langs) = 1
        OR kind = 'editions' AND schedule IS NULL AND max_articles IS NULL AND require_approval IS NULL)
);
-- A newsletter is never deleted (its issues, archive and readers' consent name it); one that ends
-- will be retired, not removed. Only someone who can drop the trigger can.
-- +goose StatementBegin
CREATE FUNCTION newsletters_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'newsletters are never deleted: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER newsletters_no_delete BEFORE DELETE ON newsletters FOR EACH ROW EXECUTE FUNCTION newsletters_kept();
CREATE TRIGGER newsletters_no_truncate BEFORE TRUNCATE ON newsletters FOR EACH STATEMENT EXECUTE FUNCTION newsletters_kept();

-- A language's digest is the one its readers get, picked by lang (today's form, import, manage
-- page): one per language until readers choose newsletters themselves.
CREATE UNIQUE INDEX newsletters_digest_lang ON newsletters (lang) WHERE kind = 'digest';

INSERT INTO newsletters (slug, kind, names, langs)
SELECT 'digest-' || lower(l), 'digest',
    CASE l WHEN 'en' THEN '{"en": "Weekly digest in English", "ru": "Еженедельный дайджест на английском"}'::jsonb
           WHEN 'ru' THEN '{"en": "Weekly digest in Russian", "ru": "Еженедельный дайджест на русском"}'::jsonb
           ELSE jsonb_build_object('en', 'Weekly digest (' || l || ')', 'ru', 'Еженедельный дайджест (' || l || ')') END,
    ARRAY[l]
FROM (SELECT 'en' UNION SELECT 'ru'
      UNION SELECT lang FROM subscribers UNION SELECT lang FROM issues UNION SELECT lang FROM feeds) AS l(l)
ORDER BY l = 'ru', l = 'en' DESC, l;

-- A reader's subscription to one newsletter. state 'active': they get it while their global status
-- (subscribers.status) is 'confirmed'; 'left': they left it. A reader receives newsletter N iff
-- status = 'confirmed' AND an active subscription to N exists. created_at: when the current
-- subscription began (a return after leaving starts it again).
--
-- The consent it rests on: consent_id, the confirmed request (form, API) that started it, or
-- import_id, the import that did (imports is append-only, so no foreign key, as subscribers.import_id).
-- A reference rather than a link table: a subscription starts from exactly one consent; the
-- requests themselves stay in consents. What a request asks for, once it can ask for several
-- newsletters, is the next step's (today it asks for the digest of consents.lang).
--
-- subscriber_id has no foreign key either: its check (a key-share lock on the reader's row per
-- subscription written) cost an import of 100,000 readers about 180 ms of its 1.2 s. What a
-- foreign key would guard is kept by the code and the trigger after this table: subscriptions are
-- written only from the reader's own row, in the statement or transaction that holds it, and a
-- reader's deletion (erasure, expiry) deletes theirs. The one gap, a subscription written from a
-- snapshot while another transaction deletes its reader, leaves a row of two ids that no send can
-- reach (sending joins the reader's row) and no personal data.
CREATE TABLE subscriptions (
    subscriber_id bigint NOT NULL,
    -- No foreign key: its check locks the newsletter's row once per subscription written, which
    -- cost an import of 100,000 readers a third of its time; newsletters are never deleted
    -- (the trigger below), so the reference cannot dangle.
    newsletter_id bigint NOT NULL,
    state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'left')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    left_at       timestamptz,
    consent_id    bigint REFERENCES consents (id) ON DELETE SET NULL,
    import_id     bigint,
    PRIMARY KEY (subscriber_id, newsletter_id),
    CHECK ((state = 'left') = (left_at IS NOT NULL))
);
-- The sender walks one newsletter's active readers in id order (the index the readers' table kept
-- per language until now).
CREATE INDEX subscriptions_active ON subscriptions (newsletter_id, subscriber_id) WHERE state = 'active';
-- A consent's deletion (expiry of a request, never of a confirmed one) finds its subscriptions.
CREATE INDEX subscriptions_consent ON subscriptions (consent_id) WHERE consent_id IS NOT NULL;
DROP INDEX subscribers_confirmed_lang_id;

-- A reader's deletion takes their subscriptions: once per statement, over the rows it deleted, so
-- an expiry of thousands of readers is one join rather than thousands of probes.
-- +goose StatementBegin
CREATE FUNCTION subscriptions_follow_readers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM subscriptions s USING gone WHERE s.subscriber_id = gone.id;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER subscribers_deleted AFTER DELETE ON subscribers REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_follow_readers();

-- Every reader keeps what they get today, the digest of their language: a subscription for each
-- reader who ever consented (everyone but a pending reader whose request is still open), left for
-- those who unsubscribed, active otherwise (bounced and complained readers get nothing by their
-- status, as before). Its consent: their latest confirmed request, else the import that added them.
INSERT INTO subscriptions (subscriber_id, newsletter_id, state, created_at, left_at, consent_id, import_id)
SELECT s.id, n.id,
    CASE WHEN s.status = 'unsubscribed' THEN 'left' ELSE 'active' END,
    coalesce(c.confirmed_at, s.confirmed_at, s.created_at),
    CASE WHEN s.status = 'unsubscribed' THEN coalesce(s.unsubscribed_at, s.updated_at) END,
    c.id,
    CASE WHEN c.id IS NULL THEN s.import_id END
FROM subscribers s
JOIN newsletters n ON n.kind = 'digest' AND n.lang = s.lang
LEFT JOIN LATERAL (
    SELECT id, confirmed_at FROM consents
    WHERE subscriber_id = s.id AND confirmed_at IS NOT NULL
    ORDER BY confirmed_at DESC, id DESC LIMIT 1
) c ON true
WHERE s.status <> 'pending' OR c.id IS NOT NULL OR s.import_id IS NOT NULL;

-- An issue belongs to a newsletter; today's issues to their language's digest.
ALTER TABLE issues ADD COLUMN newsletter_id bigint REFERENCES newsletters (id);
UPDATE issues i SET newsletter_id = n.id FROM newsletters n WHERE n.kind = 'digest' AND n.lang = i.lang;
ALTER TABLE issues ALTER COLUMN newsletter_id SET NOT NULL;

-- A feed feeds a digest; today the digest of its language.
ALTER TABLE feeds ADD COLUMN newsletter_id bigint REFERENCES newsletters (id);
UPDATE feeds f SET newsletter_id = n.id FROM newsletters n WHERE n.kind = 'digest' AND n.lang = f.lang;
