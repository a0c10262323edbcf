-- +goose Up
-- An import's consent evidence is the import itself: who ran it, when, which file (its SHA-256),
-- under which consent text, how many rows. One row per import, instead of the same evidence
-- copied into a consents row for each reader it added (subscribers.Store.Import). It holds no
-- reader's data, so it stays when a reader it added is erased. actor is 'cli' for the command
-- line, an editor's address for an editor.
CREATE TABLE imports (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    file_sha256  bytea NOT NULL CHECK (length(file_sha256) = 32),
    text_version text NOT NULL CHECK (length(text_version) BETWEEN 1 AND 64),
    row_count    int NOT NULL CHECK (row_count >= 0)
);

-- The import that added the reader; NULL for readers who came another way (and for those added
-- by imports before this migration, whose consents rows of source 'import' stay as they were:
-- still true evidence, read alongside). No foreign key: an imports row is never updated or
-- deleted (the triggers below), so the reference cannot dangle, and a foreign key would cost an
-- index probe for every reader an import adds, the per-reader check this table replaces.
ALTER TABLE subscribers ADD COLUMN import_id bigint;

-- Append-only: evidence nobody the service runs can rewrite. Only someone who can drop the
-- trigger (the database's owner, on purpose) can.
-- +goose StatementBegin
CREATE FUNCTION imports_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'imports is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER imports_no_change BEFORE UPDATE OR DELETE ON imports
    FOR EACH ROW EXECUTE FUNCTION imports_append_only();
CREATE TRIGGER imports_no_truncate BEFORE TRUNCATE ON imports
    FOR EACH STATEMENT EXECUTE FUNCTION imports_append_only();
