-- +goose Up
-- The audit log names the editor (editor_id, and actor: their address then, or 'cli' for the
-- command line), where they acted from (ip) and on what (object: 'issue 7', 'article 12',
-- 'editor 3', 'reader <uuid>'; target keeps a reader's uuid for the reader's page). editor_id has
-- no foreign key: deleting an editor must not take their record with it.
ALTER TABLE audit_log
    ADD COLUMN editor_id bigint,
    ADD COLUMN ip        text NOT NULL DEFAULT '' CHECK (length(ip) <= 64),
    ADD COLUMN object    text NOT NULL DEFAULT '' CHECK (length(object) <= 100);
CREATE INDEX audit_log_editor ON audit_log (editor_id, at);
CREATE INDEX audit_log_action ON audit_log (action, at);

-- Append-only: nothing the service runs can change or remove a row. Only someone who can drop
-- the trigger (the database's owner, on purpose) can.
-- +goose StatementBegin
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
