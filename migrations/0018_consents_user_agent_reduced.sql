-- +goose Up
-- Consent records keep the browser family and major version only ("Firefox 128", "other"); the
-- ones stored before are reduced here by the rules of subscribers.ReduceUserAgent, in its order
-- (\m is a word's start, as \b there). Values already reduced stay as they are.
UPDATE consents SET user_agent = CASE
    WHEN user_agent ~ '^\s*$' THEN ''
    WHEN user_agent ~ '^((Edge|Opera|Yandex|Samsung Internet|Firefox|Chrome|Safari) \d{1,4}|other)$' THEN user_agent
    WHEN user_agent ~ '\mEdg(?:e|A|iOS)?/(\d{1,4})(?:\D|$)'
        THEN 'Edge ' || substring(user_agent from '\mEdg(?:e|A|iOS)?/(\d{1,4})(?:\D|$)')::int
    WHEN user_agent ~ '\mOPR/(\d{1,4})(?:\D|$)'
        THEN 'Opera ' || substring(user_agent from '\mOPR/(\d{1,4})(?:\D|$)')::int
    WHEN user_agent ~ '\mYaBrowser/(\d{1,4})(?:\D|$)'
        THEN 'Yandex ' || substring(user_agent from '\mYaBrowser/(\d{1,4})(?:\D|$)')::int
    WHEN user_agent ~ '\mSamsungBrowser/(\d{1,4})(?:\D|$)'
        THEN 'Samsung Internet ' || substring(user_agent from '\mSamsungBrowser/(\d{1,4})(?:\D|$)')::int
    WHEN user_agent ~ '\m(?:Firefox|FxiOS)/(\d{1,4})(?:\D|$)'
        THEN 'Firefox ' || substring(user_agent from '\m(?:Firefox|FxiOS)/(\d{1,4})(?:\D|$)')::int
    WHEN user_agent ~ '\m(?:Chrome|CriOS)/(\d{1,4})(?:\D|$)'
        THEN 'Chrome ' || substring(user_agent from '\m(?:Chrome|CriOS)/(\d{1,4})(?:\D|$)')::int
    WHEN user_agent NOT LIKE '%Android%' AND user_agent ~ '\mVersion/(\d{1,4})(?:[^\d ][^ ]*)? (?:Mobile/\S+ )?Safari/'
        THEN 'Safari ' || substring(user_agent from '\mVersion/(\d{1,4})(?:[^\d ][^ ]*)? (?:Mobile/\S+ )?Safari/')::int
    ELSE 'other' END
WHERE user_agent <> '';
