-- Postgres twin of sqlite/004: forms opened in chat that must survive a restart until they are submitted.
CREATE TABLE pending_forms (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX pending_forms_expiry ON pending_forms (expires_at);
