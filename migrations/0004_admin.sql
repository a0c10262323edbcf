-- +goose Up
-- Editors' sessions. Only a SHA-256 of the cookie value is kept, so a copy of this table cannot be
-- replayed as a cookie. Expiry is checked against last_seen_at (idle) and created_at (absolute).
CREATE TABLE admin_sessions (
    id_hash      bytea PRIMARY KEY,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);
CREATE INDEX admin_sessions_last_seen ON admin_sessions (last_seen_at);

-- Failed editor logins of the last few minutes, per client (IP, or /64 for IPv6): the login
-- throttle counts these, so every serve process on the database applies the same limit.
CREATE TABLE admin_login_failures (
    id     bigserial PRIMARY KEY,
    client text NOT NULL,
    at     timestamptz NOT NULL
);
CREATE INDEX admin_login_failures_at ON admin_login_failures (at);
CREATE INDEX admin_login_failures_client_at ON admin_login_failures (client, at);
