-- +goose Up
-- Editors as people: one account each, with a role, a password (argon2id, PHC string) and optional
-- TOTP. The TOTP secret is sealed with a key derived from the service secret (editors.Store).
-- session_epoch moves on every change of password, TOTP, state or "log out everywhere": a session
-- opened under an older epoch is dead (admin_sessions.epoch), whatever its cookie says.
CREATE TABLE editors (
    id                  bigserial PRIMARY KEY,
    email               text NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 254 AND email = lower(email)),
    name                text NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    role                text NOT NULL CHECK (role IN ('writer', 'publisher', 'admin')),
    password_hash       text CHECK (length(password_hash) <= 200),
    totp_secret         bytea,
    totp_pending        bytea,
    -- The TOTP time step of the last code accepted: a code counts once.
    totp_last_step      bigint NOT NULL DEFAULT 0,
    session_epoch       int NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz,
    last_login_at       timestamptz,
    disabled_at         timestamptz
);

-- One-time links to set a password: an invitation, or a reset. Only a SHA-256 of the token is kept.
CREATE TABLE editor_links (
    token_hash bytea PRIMARY KEY,
    editor_id  bigint NOT NULL REFERENCES editors (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('invite', 'reset')),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX editor_links_editor ON editor_links (editor_id);

-- Sessions belong to an editor now. The shared password's sessions from before end here. While
-- NEWSLETTER_ADMIN_PASSWORD is kept for compatibility, a session it opens has no editor and keeps
-- shared, a keyed hash of that password: another password (or none) ends it, and so does the
-- first editor who sets a password (editors.Store.Session).
DELETE FROM admin_sessions;
ALTER TABLE admin_sessions
    ADD COLUMN sid       bigserial UNIQUE,
    ADD COLUMN editor_id bigint REFERENCES editors (id) ON DELETE CASCADE,
    ADD COLUMN shared    bytea,
    ADD COLUMN epoch     int NOT NULL DEFAULT 0,
    -- 'totp': the password was right and the code is still to come; only 'full' opens a page.
    ADD COLUMN stage     text NOT NULL DEFAULT 'full' CHECK (stage IN ('totp', 'full')),
    ADD COLUMN ip        text NOT NULL DEFAULT '' CHECK (length(ip) <= 64),
    ADD COLUMN device    text NOT NULL DEFAULT '' CHECK (length(device) <= 100),
    ADD CONSTRAINT admin_sessions_owner CHECK ((editor_id IS NULL) <> (shared IS NULL));
CREATE INDEX admin_sessions_editor ON admin_sessions (editor_id);

-- The login throttle records each attempt before the password (or code) is compared, and removes
-- it when the login succeeds: rows are attempts not known to be good. account is the address
-- typed (lower-cased), so guesses at one account are limited wherever they come from.
ALTER TABLE admin_login_failures RENAME TO editor_login_attempts;
ALTER TABLE editor_login_attempts ADD COLUMN account text NOT NULL DEFAULT '';
ALTER INDEX admin_login_failures_at RENAME TO editor_login_attempts_at;
ALTER INDEX admin_login_failures_client_at RENAME TO editor_login_attempts_client_at;
CREATE INDEX editor_login_attempts_account_at ON editor_login_attempts (account, at);
