-- +goose Up
-- What editors looked up and did on the readers' pages, one row each (subscribers.Store.Audit).
-- actor says who: today every editor shares one login, so it is the same for all of them and
-- session_hash (the SHA-256 of the session cookie, as admin_sessions keeps it) tells one session
-- from another; editor accounts will name the editor here. target is the reader's uuid, never the
-- address, with no foreign key: an erasure must not take its own record with it.
CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    session_hash bytea,
    action       text NOT NULL CHECK (length(action) BETWEEN 1 AND 50),
    target       uuid,
    detail       text NOT NULL DEFAULT '' CHECK (length(detail) <= 500)
);
CREATE INDEX audit_log_at ON audit_log (at);
-- A reader's page lists what editors did to that reader.
CREATE INDEX audit_log_target ON audit_log (target, at) WHERE target IS NOT NULL;
